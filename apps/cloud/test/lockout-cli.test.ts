import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { openState } from '../src/bootstrap.ts';
import { loadCloudConfig } from '../src/config.ts';
import { lockoutWarnings } from '../src/lockout/policy-check.ts';
import { createSmartLockout } from '../src/lockout/smart-lockout.ts';
import { registerAgent, touchAgent } from '../src/store/agents.ts';
import { listAudit } from '../src/store/audit.ts';
import { createTenant, effectiveLockout } from '../src/store/tenants.ts';

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
  env = {
    PATH: process.env.PATH,
    GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'data'),
    GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
  };
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
  // An agent heard from just now, so pass-through authentication may be turned on.
  const agent = await registerAgent(db, {
    tenantId,
    hostname: 'dc1',
    version: '1.0.0',
    certSerial: '01',
    certNotAfter: Date.now() + 86_400_000,
    hpkePublicKey: 'A'.repeat(43),
  });
  await touchAgent(db, agent.id, Date.now());
  await db.destroy();
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('the applied lockout follows the directory unless the setting is stricter', () => {
  const ad = { threshold: 5, durationS: 1800 };
  const applied = (threshold: number, durationS: number, d: typeof ad | null = ad) => {
    const e = effectiveLockout({ threshold, durationS }, d);
    return [e.threshold, e.durationS, e.directoryBudget];
  };
  // Each location may use half of the 4 wrong passwords AD takes before it locks at 5.
  assert.deepEqual(applied(10, 60), [2, 1800, 4], 'the defaults stay below AD');
  assert.deepEqual(applied(3, 3600), [2, 3600, 4], 'a setting above half of what AD allows is tightened');
  assert.deepEqual(applied(1, 3600), [1, 3600, 4], 'a stricter setting is kept');
  assert.deepEqual(applied(10, 60, { threshold: 11, durationS: 60 }), [5, 60, 10], 'half of 10');
  assert.deepEqual(applied(2, 3600, { threshold: 3, durationS: 7200 }), [1, 7200, 2], 'AD got stricter');
  assert.deepEqual(applied(10, 60, { threshold: 2, durationS: 60 }), [1, 60, 1], 'the budget stops the sum');
  assert.deepEqual(applied(10, 60, { threshold: 5, durationS: 0 }), [2, 86_400, 4], 'until unlocked: a day');
  assert.deepEqual(applied(10, 60, { threshold: 0, durationS: 0 }), [10, 60, null], 'AD never locks');
  assert.deepEqual(applied(10, 60, null), [10, 60, null], 'not reported yet');
});

test('lockoutWarnings say what is applied instead of a looser setting', () => {
  assert.deepEqual(lockoutWarnings({ threshold: 2, durationS: 3600 }, { threshold: 5, durationS: 1800 }), []);
  assert.equal(
    lockoutWarnings({ threshold: 3, durationS: 3600 }, { threshold: 5, durationS: 1800 })[0]?.code,
    'threshold_follows_directory',
  );
  const w = lockoutWarnings({ threshold: 10, durationS: 60 }, { threshold: 5, durationS: 1800 });
  assert.deepEqual(
    w.map((x) => x.code),
    ['threshold_follows_directory', 'duration_follows_directory'],
  );
  assert.match(w[0]!.message, /uses 2 per location/);
  assert.match(w[1]!.message, /uses 1800 s/);
  assert.deepEqual(lockoutWarnings({ threshold: 10, durationS: 60 }, { threshold: 0, durationS: 0 }), []);
  assert.equal(lockoutWarnings({ threshold: 10, durationS: 60 }, null)[0]!.code, 'directory_policy_unknown');
  assert.equal(
    lockoutWarnings({ threshold: 1, durationS: 86_400 }, { threshold: 1, durationS: 60 })[0]!.code,
    'directory_locks_at_first_failure',
  );
});

test('settings set refuses a lockout looser than the directory, and changes nothing', async () => {
  for (const flags of [
    ['--lockout-threshold', '5'],
    ['--lockout-threshold', '3'],
    ['--lockout-duration', '1799'],
    ['--lockout-threshold', '3', '--lockout-duration', '60'],
  ]) {
    const r = await gh(['settings', 'set', '--tenant', tenantId, ...flags, '--json']);
    assert.equal(r.code, 1, `${flags.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, /lockout_weaker_than_directory/);
    assert.match(r.stderr, /"maxThreshold":2/);
  }
  const check = JSON.parse((await gh(['lockout', 'check', '--tenant', tenantId, '--json'])).stdout);
  assert.deepEqual(check.cloud, { threshold: 10, durationS: 60 }, 'nothing was written');
  assert.equal(check.applied.threshold, 2);
  assert.equal(check.applied.durationS, 1800);
});

test('settings set --pta on says what smart lockout applies against the directory', async () => {
  const r = await gh(['settings', 'set', '--tenant', tenantId, '--pta', 'on']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /lockout 10\/60s \(applied 2\/1800s\)/);
  assert.match(
    r.stdout,
    /warning: The cloud lockout threshold \(10\) would let .* reach the directory's \(5\): smart lockout uses 2 per location/,
  );
  const off = await gh(['settings', 'set', '--tenant', tenantId, '--pta', 'off']);
  assert.doesNotMatch(off.stdout, /warning/);
});

test('a stricter setting is accepted without warnings, and checked against the directory', async () => {
  const ok = await gh([
    'settings',
    'set',
    '--tenant',
    tenantId,
    '--lockout-threshold',
    '2',
    '--lockout-duration',
    '3600',
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.doesNotMatch(ok.stdout, /warning/);
  const check = await gh(['lockout', 'check', '--tenant', tenantId]);
  assert.match(check.stdout, /directory: threshold 5, duration 1800 s/);
  assert.match(
    check.stdout,
    /applied: threshold 2, duration 3600 s; at most 4 wrong passwords reach the directory/,
  );
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
