/** The operator CLI's audit list and user reset-password, as separate processes on a real data directory. */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { runNode } from '../../../test/harness/children.ts';
import { openState } from '../src/bootstrap.ts';
import { loadCloudConfig } from '../src/config.ts';
import { verifyPassword } from '../src/store/password.ts';
import { findByLogin } from '../src/store/users.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const NEW_PASSWORD = `Reset-${Math.random().toString(36).slice(2, 10)}-Pw9`;
let dir: string;
let env: NodeJS.ProcessEnv;
let tenantId: string;

const gh = async (args: string[], stdin?: string) => {
  const r = await runNode(join(ROOT, 'apps/cloud/src/cli.ts'), args, { env, stdin });
  return { ...r, json: () => JSON.parse(r.stdout) };
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-cli-audit-'));
  env = {
    PATH: process.env.PATH,
    GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'data'),
    GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
  };
  writeFileSync(join(dir, 'pw'), 'First-Passw0rd!', { mode: 0o600 });
  assert.equal((await gh(['init'])).code, 0);
  const t = await gh([
    'tenant',
    'create',
    '--name',
    'T',
    '--domain',
    'fabrikam.test',
    '--admin-upn',
    'admin@fabrikam.test',
    '--admin-password-file',
    join(dir, 'pw'),
    '--json',
  ]);
  assert.equal(t.code, 0, t.stderr);
  tenantId = t.json().tenantId;
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('user reset-password takes the password from stdin, hashes it and audits without it', async () => {
  const r = await gh(
    [
      'user',
      'reset-password',
      '--tenant',
      tenantId,
      '--upn',
      'admin@fabrikam.test',
      '--password-stdin',
      '--json',
    ],
    `${NEW_PASSWORD}\n`,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.json(), { upn: 'admin@fabrikam.test', reset: true });
  const state = await openState(loadCloudConfig(env));
  try {
    const u = await findByLogin(state.db, tenantId, 'admin@fabrikam.test', 'upn');
    assert.ok(await verifyPassword(NEW_PASSWORD, u!.passwordHash!));
  } finally {
    await state.db.destroy();
  }
  for (const f of readdirSync(join(dir, 'data'), { recursive: true, encoding: 'utf8' })) {
    if (f.endsWith('.db')) assert.equal(readFileSync(join(dir, 'data', f)).indexOf(NEW_PASSWORD), -1);
  }
});

test('audit list shows the changes, newest first, with --json', async () => {
  const r = await gh(['audit', 'list', '--tenant', tenantId, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.json() as { action: string; actor: string }[];
  assert.deepEqual(rows.map((x) => x.action).slice(0, 2), ['user.reset_password', 'tenant.create']);
  assert.ok(rows.every((x) => x.actor === 'operator'));
  assert.ok(!r.stdout.includes(NEW_PASSWORD));
  const text = await gh(['audit', 'list', '--tenant', tenantId]);
  assert.match(text.stdout, /user\.reset_password\s+admin@fabrikam\.test/);
});

test('exit codes: 2 for bad usage, 1 for a catalog error', async () => {
  assert.equal((await gh(['audit', 'list', '--tenant', tenantId, '--limit', 'x'])).code, 2);
  assert.equal(
    (await gh(['user', 'reset-password', '--tenant', tenantId, '--upn', 'admin@fabrikam.test'])).code,
    2,
  );
  const missing = await gh(
    [
      'user',
      'reset-password',
      '--tenant',
      tenantId,
      '--upn',
      'nobody@fabrikam.test',
      '--password-stdin',
      '--json',
    ],
    'Whatever-Passw0rd!',
  );
  assert.equal(missing.code, 1);
  assert.equal(missing.json().error, 'not_found');
  const weak = await gh(
    [
      'user',
      'reset-password',
      '--tenant',
      tenantId,
      '--upn',
      'admin@fabrikam.test',
      '--password-stdin',
      '--json',
    ],
    'short',
  );
  assert.equal(weak.code, 1);
  assert.equal(weak.json().error, 'validation_failed');
  assert.equal((await gh(['audit', 'list', '--tenant', 'no-such-tenant'])).code, 1);
});
