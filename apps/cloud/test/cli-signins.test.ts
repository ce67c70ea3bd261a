import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { openState } from '../src/bootstrap.ts';
import { loadCloudConfig } from '../src/config.ts';
import { createTenant } from '../src/store/tenants.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-signins-'));
const env = {
  PATH: process.env.PATH,
  GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'data'),
  GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
};
let tenantId: string;
const T0 = Date.parse('2026-11-01T10:00:00Z');

const signins = (...args: string[]): Promise<Array<Record<string, unknown>>> =>
  new Promise((done, fail) => {
    execFile(
      process.execPath,
      ['apps/cloud/src/cli.ts', 'signins', 'list', '--tenant', tenantId, '--json', ...args],
      { cwd: ROOT, env },
      (err, stdout, stderr) => (err ? fail(new Error(stderr)) : done(JSON.parse(stdout))),
    );
  });

before(async () => {
  const { db, secrets } = await openState(loadCloudConfig(env));
  ({ tenantId } = await createTenant(
    { db, secrets, now: Date.now },
    { name: 'T', domain: 'log.example', admin: { upn: 'admin@log.example', password: 'Admin-pass-1234!' } },
  ));
  const row = (i: number, outcome: string, agent: string | null) => ({
    tenant_id: tenantId,
    at: T0 + i * 60_000,
    request_id: `r${i}`,
    upn: `u${i}@log.example`,
    user_id: null,
    method: 'password_grant',
    outcome,
    client_id: null,
    client_ip: '192.0.2.1',
    agent_id: agent,
    server: null,
    directory_code: null,
    agent_ms: null,
    directory_ms: null,
    total_ms: 1,
  });
  await db
    .insertInto('signins')
    .values([
      row(0, 'success', 'a1'),
      row(1, 'invalid_credentials', 'a1'),
      row(2, 'invalid_credentials', 'a2'),
    ])
    .execute();
  await db.destroy();
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('signins list filters by outcome, agent and time', async () => {
  assert.equal((await signins()).length, 3);
  assert.deepEqual(
    (await signins('--outcome', 'invalid_credentials')).map((r) => r.requestId),
    ['r2', 'r1'],
  );
  assert.deepEqual(
    (await signins('--agent', 'a1')).map((r) => r.requestId),
    ['r1', 'r0'],
  );
  assert.deepEqual(
    (await signins('--since', '2026-11-01T10:01:00Z')).map((r) => r.requestId),
    ['r2', 'r1'],
  );
  await assert.rejects(signins('--since', 'yesterday'), /since/);
});
