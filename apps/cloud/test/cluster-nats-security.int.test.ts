/**
 * The scale-out shape talks to NATS over TLS with a pinned CA and a user: a real nats-server with
 * TLS and authentication, a real cloud node joining it, and the ways joining must fail.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createCa, createServerCert, isGatehouseError } from '@gatehouse/protocol';
import { freePort, waitFor } from '../../../test/harness/children.ts';
import { loadCloudConfig } from '../src/config.ts';
import { startCloud } from '../src/server.ts';

const NATS = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find(existsSync);
const dir = mkdtempSync(join(tmpdir(), 'gh-nats-tls-'));
const PASSWORD = `nats-${Math.random().toString(36).slice(2)}`;
let server: ChildProcess | undefined;
let url = '';

before(async () => {
  if (!NATS) {
    if (process.env.CI === 'true') throw new Error('nats-server is required under CI');
    return;
  }
  const ca = await createCa('NATS test CA', 1);
  const cert = await createServerCert(ca, ['localhost', '127.0.0.1'], 1);
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  writeFileSync(join(dir, 'server.pem'), cert.certPem);
  writeFileSync(join(dir, 'server.key'), cert.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'nats.pw'), `${PASSWORD}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'wrong.pw'), 'not-the-password\n', { mode: 0o600 });
  const other = await createCa('Another CA', 1);
  writeFileSync(join(dir, 'other-ca.pem'), other.certPem);
  const port = await freePort();
  url = `tls://127.0.0.1:${port}`;
  server = spawn(
    NATS,
    [
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '--tls',
      '--tlscert',
      join(dir, 'server.pem'),
      '--tlskey',
      join(dir, 'server.key'),
      '--user',
      'gatehouse',
      '--pass',
      PASSWORD,
    ],
    { stdio: 'ignore' },
  );
  await waitFor('nats-server', async () => {
    const { connect } = await import('node:net');
    return new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      }).on('error', () => resolve(false));
    });
  });
});

after(() => {
  server?.kill();
  rmSync(dir, { recursive: true, force: true });
});

const node = (overrides: Record<string, unknown>) =>
  startCloud(
    {
      dataDir: join(dir, `node-${Math.random().toString(36).slice(2)}`),
      port: 0,
      gatewayPort: 0,
      logLevel: 'silent',
      natsUrl: url,
      ...overrides,
    },
    { env: {} },
  );

test('a tls:// NATS URL needs a CA to pin; user and password file go together', () => {
  for (const [overrides, path] of [
    [{ natsUrl: 'tls://127.0.0.1:4222' }, 'natsCaFile'],
    [{ natsUser: 'gatehouse' }, 'natsUser'],
  ] as const) {
    try {
      loadCloudConfig({}, overrides);
      assert.fail('expected config_invalid');
    } catch (err) {
      assert.ok(isGatehouseError(err) && err.code === 'config_invalid');
      assert.ok(JSON.stringify(err.detail).includes(path));
    }
  }
});

test('files the configuration names must be readable, all reported at once', () => {
  try {
    loadCloudConfig(
      {},
      {
        tlsCertFile: join(dir, 'missing-cert.pem'),
        tlsKeyFile: join(dir, 'missing-key.pem'),
        natsUser: 'gatehouse',
        natsPasswordFile: join(dir, 'missing.pw'),
      },
    );
    assert.fail('expected config_invalid');
  } catch (err) {
    assert.ok(isGatehouseError(err) && err.code === 'config_invalid');
    const paths = (err.detail as { path: string }[]).map((d) => d.path).sort();
    assert.deepEqual(paths, ['natsPasswordFile', 'tlsCertFile', 'tlsKeyFile']);
  }
});

test('a node joins NATS over TLS with the pinned CA and its user', {
  skip: !NATS && 'no nats-server',
}, async () => {
  const cloud = await node({
    natsCaFile: join(dir, 'ca.pem'),
    natsUser: 'gatehouse',
    natsPasswordFile: join(dir, 'nats.pw'),
  });
  await cloud.stop();
});

test('a node refuses a NATS server its pinned CA did not issue', {
  skip: !NATS && 'no nats-server',
}, async () => {
  await assert.rejects(
    node({
      natsCaFile: join(dir, 'other-ca.pem'),
      natsUser: 'gatehouse',
      natsPasswordFile: join(dir, 'nats.pw'),
    }),
    (err: Error) =>
      /certificate|verify|issuer/i.test(`${err.message} ${String((err as { code?: unknown }).code)}`),
  );
});

test('a node with the wrong password is refused by NATS', { skip: !NATS && 'no nats-server' }, async () => {
  await assert.rejects(
    node({ natsCaFile: join(dir, 'ca.pem'), natsUser: 'gatehouse', natsPasswordFile: join(dir, 'wrong.pw') }),
    (err: Error) => /authori[sz]ation/i.test(`${err.message} ${String((err as { code?: unknown }).code)}`),
  );
});
