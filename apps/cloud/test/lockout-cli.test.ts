import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { openState } from '../src/bootstrap.ts';
import { loadCloudConfig } from '../src/config.ts';
import { listAudit } from '../src/directory/audit.ts';
import { createTenant } from '../src/directory/tenants.ts';
import { lockoutWarnings } from '../src/lockout/policy-check.ts';
import { createSmartLockout } from '../src/lockout/smart-lockout.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
let dir: string;
let env: NodeJS.ProcessEnv;
let tenantId: string;
let adminId: string;

const gh = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((done) => {
    execFile(
      process.execPath,
      ['apps/cloud/src/cli.ts', ...args],
      { cwd: ROOT, env },
      (err, stdout, stderr) => done({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-lockout-cli-'));
  env = { PATH: process.env.PATH, GATEHOUSE_DATA_DIR: join(dir, 'data'), GATEHOUSE_LOG_LEVEL: 'silent' };
  writeFileSync(join(dir, 'pw'), 'Admin-pass-1234!');
  const { db, secrets } = await openState(loadCloudConfig(env));
  const t = await createTenant(
    { db, secrets, now: Date.now },
    { name: 'T', domain: 'lock.example', admin: { upn: 'admin@lock.example', password: 'Admin-pass-1234!' } },
  );
  tenantId = t.tenantId;
  adminId = t.adminUserId;
  // Three failures lock the admin (threshold 3), as smart lockout records them.
  const lockout = createSmartLockout(db, secrets, Date.now);
  for (let i = 0; i < 3; i++) {
    const a = await lockout.admit(
      tenantId,
      adminId,
      `bad-${i}`,
      {},
      { threshold: 3, durationS: 600 },
      Date.now() + 5000,
    );
    assert.equal(a.kind, 'admit');
    if (a.kind === 'admit')
      await lockout.settle(a.reservation, 'invalid_credentials', { threshold: 3, durationS: 600 });
  }
  await db
    .updateTable('tenants')
    .set({ directory_lockout_threshold: 5, directory_lockout_duration_s: 1800 })
    .where('id', '=', tenantId)
    .execute();
  await db.destroy();
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('lockoutWarnings: the cloud must trip first and hold longer', () => {
  assert.deepEqual(lockoutWarnings({ threshold: 3, durationS: 3600 }, { threshold: 5, durationS: 1800 }), []);
  assert.deepEqual(
    lockoutWarnings({ threshold: 10, durationS: 60 }, { threshold: 5, durationS: 1800 }).map((w) => w.code),
    ['threshold_not_lower', 'duration_not_longer'],
  );
  assert.deepEqual(lockoutWarnings({ threshold: 10, durationS: 60 }, { threshold: 0, durationS: 0 }), []);
  assert.equal(lockoutWarnings({ threshold: 10, durationS: 60 }, null)[0]!.code, 'directory_policy_unknown');
});

test('settings set warns when the cloud threshold is not below the directory one', async () => {
  const r = await gh(['settings', 'set', '--tenant', tenantId, '--lockout-threshold', '8', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    JSON.parse(r.stdout).warnings.map((w: { code: string }) => w.code),
    ['threshold_not_lower', 'duration_not_longer'],
  );
  const ok = await gh([
    'settings',
    'set',
    '--tenant',
    tenantId,
    '--lockout-threshold',
    '3',
    '--lockout-duration',
    '3600',
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.doesNotMatch(ok.stdout, /warning/);
  const check = await gh(['lockout', 'check', '--tenant', tenantId]);
  assert.match(check.stdout, /directory: threshold 5, duration 1800 s/);
});

test('user lockout shows the lock; user unlock clears it and is audited', async () => {
  const before = await gh(['user', 'lockout', '--tenant', tenantId, '--upn', 'admin@lock.example', '--json']);
  assert.equal(before.code, 0, before.stderr);
  const counters = JSON.parse(before.stdout).counters;
  assert.equal(counters[0].locked, true);
  assert.equal(counters[0].failures, 3);
  const un = await gh(['user', 'unlock', '--tenant', tenantId, '--upn', 'admin@lock.example']);
  assert.equal(un.code, 0, un.stderr);
  const afterUnlock = JSON.parse(
    (await gh(['user', 'lockout', '--tenant', tenantId, '--upn', 'admin@lock.example', '--json'])).stdout,
  );
  assert.equal(afterUnlock.counters[0].locked, false);
  const missing = await gh(['user', 'unlock', '--tenant', tenantId, '--upn', 'nobody@lock.example']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /not_found/);
  const { db } = await openState(loadCloudConfig(env));
  const entries = await listAudit(db, tenantId, {});
  await db.destroy();
  assert.ok(entries.some((e) => e.action === 'user.unlock' && e.target === 'admin@lock.example'));
});
