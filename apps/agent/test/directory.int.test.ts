import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type SlapdInstance, startSlapd } from '../../../test/harness/slapd.ts';
import { type DirectoryConfig, loadAgentConfig } from '../src/config.ts';
import { Directory } from '../src/directory/index.ts';

const PW = 'Corr3ct-Horse!';
let slapd: SlapdInstance;
let tmp: string;
let deadUrl: string;
let silent: Server;
let silentUrl: string;
const sockets: Socket[] = [];

const cfg = (over: Record<string, unknown> = {}): DirectoryConfig =>
  loadAgentConfig({
    env: {},
    overrides: {
      stateDir: tmp,
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPasswordFile: join(tmp, 'svc.pw'),
        baseDns: [slapd.peopleDn],
        connectTimeoutMs: 1000,
        timeoutMs: 1500,
        poolSize: 2,
        ...over,
      },
    },
  }).directory;

const dn = (uid: string) => `uid=${uid},${slapd.peopleDn}`;
const user = (uid: string) => ({ dn: dn(uid), upn: `${uid}@example.test` });

before(async () => {
  slapd = await startSlapd({
    users: ['alice', 'gina'].map((uid) => ({ uid, password: PW, mail: `${uid}@example.test` })),
  });
  tmp = mkdtempSync(join(tmpdir(), 'gh-agent-dir-'));
  writeFileSync(join(tmp, 'svc.pw'), `${slapd.servicePassword}\n`, { mode: 0o600 });
  // A port nobody listens on: take one, then close it.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  deadUrl = `ldap://127.0.0.1:${(probe.address() as { port: number }).port}`;
  await new Promise((r) => probe.close(r));
  // A server that accepts connections and never answers.
  silent = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  silentUrl = `ldap://127.0.0.1:${(silent.address() as { port: number }).port}`;
});

after(async () => {
  for (const s of sockets) s.destroy();
  silent?.close();
  await slapd?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('correct password: success, with the server and a directory time', async () => {
  const d = new Directory(cfg(), { backgroundProbe: false });
  const r = await d.validate(user('alice'), PW);
  assert.equal(r.outcome, 'success');
  assert.equal(r.directoryCode, '0');
  assert.equal(r.server, slapd.url);
  assert.ok(r.directoryMs > 0);
  // The connection is reused: many binds in a row on a pool of 2 still succeed.
  const many = await Promise.all(Array.from({ length: 20 }, () => d.validate(user('alice'), PW)));
  assert.deepEqual(new Set(many.map((m) => m.outcome)), new Set(['success']));
  await d.close();
});

test('wrong password, unknown user, empty password and a DN outside the base all look the same', async () => {
  const d = new Directory(cfg(), { backgroundProbe: false });
  const wrong = await d.validate(user('alice'), 'not-the-password');
  assert.equal(wrong.outcome, 'invalid_credentials');
  assert.equal(wrong.directoryCode, '49');
  const unknown = await d.validate(user('nobody'), PW);
  assert.equal(unknown.outcome, 'invalid_credentials');
  const empty = await d.validate(user('alice'), '');
  assert.equal(empty.outcome, 'invalid_credentials');
  const outside = await d.validate({ dn: slapd.serviceDn, upn: 'x@example.test' }, slapd.servicePassword);
  assert.equal(outside.outcome, 'invalid_credentials');
  // And a correct bind afterwards on the same pooled connections still works.
  assert.equal((await d.validate(user('alice'), PW)).outcome, 'success');
  await d.close();
});

test('server down: directory_unreachable', async () => {
  const d = new Directory(cfg({ urls: [deadUrl] }), { backgroundProbe: false });
  const r = await d.validate(user('alice'), PW);
  assert.equal(r.outcome, 'directory_unreachable');
  assert.equal(r.directoryCode, 'net:ECONNREFUSED');
  const h = await d.probe();
  assert.equal(h.ok, false);
  await d.close();
});

test('failover: the first URL is dead, the second answers; the dead one is marked down', async () => {
  const d = new Directory(cfg({ urls: [deadUrl, slapd.url] }), { backgroundProbe: false });
  const r = await d.validate(user('gina'), PW);
  assert.equal(r.outcome, 'success');
  assert.equal(r.server, slapd.url);
  assert.equal(d.servers.servers[0].up, false);
  // The next request goes straight to the live server.
  const order = d.servers.order().map((s) => s.url);
  assert.deepEqual(order, [slapd.url, deadUrl]);
  assert.equal((await d.validate(user('gina'), 'wrong')).outcome, 'invalid_credentials');
  const h = await d.probe();
  assert.deepEqual(h, { ok: true, server: slapd.url });
  await d.close();
});

test('a server that accepts but never answers: directory_timeout within the budget', async () => {
  const d = new Directory(cfg({ urls: [silentUrl], timeoutMs: 400 }), { backgroundProbe: false });
  const t0 = performance.now();
  const r = await d.validate(user('alice'), PW);
  const took = performance.now() - t0;
  assert.equal(r.outcome, 'directory_timeout');
  assert.ok(took < 1500, `took ${took} ms`);
  await d.close();
});

test('background probe brings a server back when it answers again', async () => {
  const d = new Directory(cfg({ urls: [slapd.url], probeIntervalMs: 100 }));
  d.servers.markDown(d.servers.servers[0], 'test');
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(d.servers.servers[0].up, true);
  await d.close();
});
