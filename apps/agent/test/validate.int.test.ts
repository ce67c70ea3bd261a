import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { aad, generateHpkeKeyPair, hpkeSeal, Validate } from '@gatehouse/protocol';
import { type SlapdInstance, startSlapd } from '../../../test/harness/slapd.ts';
import { loadAgentConfig } from '../src/config.ts';
import { Directory } from '../src/directory/index.ts';
import { handleValidate } from '../src/validate.ts';

const PW = 'Canary-Pa55word-7f3a';
const TENANT = 'tenant-1';
let slapd: SlapdInstance;
let tmp: string;
let configFile: string;
let dir: Directory;
const keys = generateHpkeKeyPair();

before(async () => {
  slapd = await startSlapd({
    users: ['alice', 'bob'].map((uid) => ({ uid, password: PW, mail: `${uid}@example.test` })),
  });
  tmp = mkdtempSync(join(tmpdir(), 'gh-agent-val-'));
  writeFileSync(join(tmp, 'svc.pw'), slapd.servicePassword, { mode: 0o600 });
  configFile = join(tmp, 'config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      stateDir: tmp,
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPasswordFile: join(tmp, 'svc.pw'),
        baseDns: [slapd.peopleDn],
      },
    }),
  );
  dir = new Directory(loadAgentConfig({ configFile, env: {} }).directory, { backgroundProbe: false });
});

after(async () => {
  await dir?.close();
  await slapd?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A validation request as the cloud builds it: sealed with aad(tenant, id, upn, deadline). */
const request = (
  uid: string,
  password: string,
  o: { sealFor?: { tenant?: string; upn?: string }; deadline?: number; sentAt?: number } = {},
): Validate => {
  const now = Date.now();
  const id = `req-${Math.random().toString(36).slice(2)}`;
  const upn = `${uid}@example.test`;
  const deadline = o.deadline ?? now + 5000;
  const sealed = hpkeSeal(
    keys.publicKey,
    new TextEncoder().encode(password),
    aad(o.sealFor?.tenant ?? TENANT, id, o.sealFor?.upn ?? upn, deadline),
  );
  // Parsed, as the agent's channel does: the test feeds the handler only what the schema lets through.
  return Validate.parse({
    type: 'validate',
    id,
    tenantId: TENANT,
    user: { upn, dn: `uid=${uid},${slapd.peopleDn}`, anchor: 'x' },
    enc: Buffer.from(sealed.enc).toString('base64url'),
    ct: Buffer.from(sealed.ct).toString('base64url'),
    deadline,
    sentAt: o.sentAt ?? now,
  });
};

const deps = () => ({ directory: dir, hpkePrivateKey: keys.privateKey, tenantId: TENANT });

test('the sealed password opens and binds: success, with timings', async () => {
  const r = await handleValidate(request('alice', PW), deps());
  assert.equal(r.outcome, 'success');
  assert.equal(r.server, slapd.url);
  assert.ok(r.agentMs >= r.directoryMs && r.directoryMs > 0);
  assert.equal((await handleValidate(request('alice', 'wrong-one'), deps())).outcome, 'invalid_credentials');
});

test('a ciphertext bound to another user, tenant or key does not open: agent_decrypt_failed, no bind', async () => {
  // Sealed for bob, presented as a request for alice (the password is right for both).
  const r = await handleValidate(request('alice', PW, { sealFor: { upn: 'bob@example.test' } }), deps());
  assert.equal(r.outcome, 'agent_decrypt_failed');
  assert.equal(r.directoryMs, 0);
  const other = await handleValidate(request('alice', PW, { sealFor: { tenant: 'tenant-2' } }), deps());
  assert.equal(other.outcome, 'agent_decrypt_failed');
  const wrongKey = await handleValidate(request('alice', PW), {
    ...deps(),
    hpkePrivateKey: generateHpkeKeyPair().privateKey,
  });
  assert.equal(wrongKey.outcome, 'agent_decrypt_failed');
  // Tampering with the deadline breaks the aad too.
  const m = request('alice', PW);
  const tampered = await handleValidate({ ...m, deadline: m.deadline + 1000 }, deps());
  assert.equal(tampered.outcome, 'agent_decrypt_failed');
});

test('deadline already passed: agent_late; clocks far apart: clock_skew', async () => {
  const late = await handleValidate(request('alice', PW, { deadline: Date.now() - 1 }), deps());
  assert.equal(late.outcome, 'agent_late');
  const skew = await handleValidate(
    request('alice', PW, { sentAt: Date.now() + 5 * 60_000, deadline: Date.now() + 5 * 60_000 + 5000 }),
    deps(),
  );
  assert.equal(skew.outcome, 'clock_skew');
});

const testAuth = (user: string, stdin: string) =>
  new Promise<{ code: number; out: string }>((resolve) => {
    const c = spawn(process.execPath, [
      join(import.meta.dirname, '../src/main.ts'),
      'test-auth',
      user,
      '--config',
      configFile,
      '--json',
    ]);
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.stderr.on('data', (d) => {
      out += d;
    });
    c.on('close', (code) => resolve({ code: code ?? -1, out }));
    c.stdin.end(stdin);
  });

test('CLI test-auth: password from stdin, same outcomes as the run path, never printed', async () => {
  const ok = await testAuth('alice@example.test', `${PW}\n`);
  assert.equal(ok.code, 0, ok.out);
  assert.equal(JSON.parse(ok.out).outcome, 'success');
  assert.ok(!ok.out.includes(PW));
  const bad = await testAuth(`uid=bob,${slapd.peopleDn}`, 'nope\n');
  assert.equal(bad.code, 1);
  assert.equal(JSON.parse(bad.out).outcome, 'invalid_credentials');
  const unknown = await testAuth('ghost@example.test', `${PW}\n`);
  assert.equal(unknown.code, 1);
  assert.equal(JSON.parse(unknown.out).outcome, 'invalid_credentials');
});
