import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { MAX_FRAME_BYTES, SyncPage } from '@gatehouse/protocol';
import { Client } from 'ldapts';
import { type SlapdInstance, startSlapd } from '../../../test/harness/slapd.ts';
import { loadAgentConfig } from '../src/config.ts';
import { Directory } from '../src/directory/index.ts';
import { chunk, collectUsers, deletionGuard, guidToString } from '../src/sync.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const names = ['ann', 'ben', 'cat', 'dan', 'eva'];
let slapd: SlapdInstance;
let tmp: string;
let configFile: string;

before(async () => {
  slapd = await startSlapd({
    users: [
      ...names.map((uid) => ({
        uid,
        password: 'pw-not-used-1',
        mail: `${uid}@example.test`,
        cn: `${uid} Test`,
      })),
      { uid: 'nomail', password: 'pw-not-used-1' },
    ],
    // Unpaged searches by non-root users stop at 3 entries: only a really paged search sees all 6.
    sizeLimit: 3,
  });
  tmp = mkdtempSync(join(tmpdir(), 'gh-agent-sync-'));
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
      sync: { pageSize: 2 },
    }),
  );
});

after(async () => {
  await slapd?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('overlapping base DNs list each user once', async () => {
  const cfg = loadAgentConfig({ configFile, env: {} });
  const suffix = slapd.peopleDn.split(',').slice(1).join(',');
  const dir = new Directory(
    { ...cfg.directory, baseDns: [slapd.peopleDn, suffix] },
    { backgroundProbe: false },
  );
  const r = await collectUsers(dir, cfg.sync.pageSize);
  await dir.close();
  assert.deepEqual(r.users.map((u) => u.onPremName).sort(), names);
});

test('the size limit is real: an unpaged search as the service account is cut short', async () => {
  const c = new Client({ url: slapd.url });
  await c.bind(slapd.serviceDn, slapd.servicePassword);
  await assert.rejects(c.search(slapd.peopleDn, { scope: 'sub', filter: '(objectClass=inetOrgPerson)' }), {
    code: 4,
  });
  await c.unbind();
});

test('paged sync (pageSize 2) returns every seeded user with its entryUUID anchor', async () => {
  const cfg = loadAgentConfig({ configFile, env: {} });
  const dir = new Directory(cfg.directory, { backgroundProbe: false });
  const r = await collectUsers(dir, cfg.sync.pageSize);
  await dir.close();
  assert.equal(r.server, slapd.url);
  assert.equal(r.skipped, 1, 'the entry without mail has no UPN');
  assert.deepEqual(r.users.map((u) => u.onPremName).sort(), names);
  for (const u of r.users) {
    assert.match(u.anchor, UUID);
    assert.equal(u.upn, `${u.onPremName}@example.test`);
    assert.equal(u.mail, u.upn);
    assert.equal(u.dn, `uid=${u.onPremName},${slapd.peopleDn}`);
    assert.equal(u.displayName, `${u.onPremName} Test`);
    assert.equal(u.enabled, true);
  }
  assert.equal(new Set(r.users.map((u) => u.anchor)).size, names.length);

  const pages = chunk(r.users, cfg.sync.pageSize);
  assert.deepEqual(
    pages.map((p) => p.length),
    [2, 2, 1],
  );
  pages.forEach((users, seq) => {
    const page = {
      type: 'sync.page',
      runId: 'r1',
      mode: 'full',
      seq,
      users,
      final: seq === pages.length - 1,
    };
    assert.ok(SyncPage.safeParse(page).success);
  });
  assert.deepEqual(chunk([], 2), [[]], 'an empty directory still sends one final page');
  // 500 users with long DNs are far more than one 64 KiB frame: pages are cut by size too.
  const big = Array.from({ length: 1000 }, (_, i) => ({
    anchor: `anchor-${i}`.padEnd(36, '0'),
    upn: `user${i}@example.test`,
    dn: `uid=user${i},ou=${'department'.repeat(20)},dc=example,dc=test`,
    enabled: true,
  }));
  const bySize = chunk(big, 500, MAX_FRAME_BYTES - 1024);
  assert.ok(bySize.length > 2);
  assert.equal(bySize.flat().length, 1000);
  for (const [seq, users] of bySize.entries()) {
    const frame = JSON.stringify({
      type: 'sync.page',
      runId: 'r'.repeat(36),
      mode: 'full',
      seq,
      users,
      final: false,
    });
    assert.ok(Buffer.byteLength(frame) <= MAX_FRAME_BYTES, `page ${seq} fits in a frame`);
  }
});

test('a user that is admin-locked in ppolicy syncs as disabled', async () => {
  await slapd.ldapModify(
    `dn: uid=eva,${slapd.peopleDn}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n\n`,
  );
  const cfg = loadAgentConfig({ configFile, env: {} });
  const dir = new Directory(cfg.directory, { backgroundProbe: false });
  const r = await collectUsers(dir, 2);
  await dir.close();
  assert.equal(r.users.find((u) => u.onPremName === 'eva')?.enabled, false);
  assert.equal(r.users.find((u) => u.onPremName === 'ann')?.enabled, true);
});

test('deletion guard and GUID formatting', () => {
  assert.deepEqual(deletionGuard(undefined, 0, 0.2), { ok: true, removedFraction: 0 });
  assert.equal(deletionGuard(100, 85, 0.2).ok, true);
  assert.equal(deletionGuard(100, 79, 0.2).ok, false);
  assert.equal(deletionGuard(100, 0, 0.2).ok, false);
  const b = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  assert.equal(guidToString(b), '33221100-5544-7766-8899-aabbccddeeff');
});

test('CLI: gatehouse-agent sync prints the users without contacting any cloud', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [join(import.meta.dirname, '../src/main.ts'), 'sync', '--config', configFile, '--json'],
    { env: { ...process.env, HTTPS_PROXY: '' } },
  );
  const r = JSON.parse(stdout) as { users: { upn: string; anchor: string }[] };
  assert.equal(r.users.length, names.length);
  assert.ok(r.users.every((u) => UUID.test(u.anchor)));
});
