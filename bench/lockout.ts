/**
 * Smart lockout's cost per sign-in on the embedded shape (SQLite file): admit + settle for a
 * successful sign-in from a familiar place, and for a wrong password. `npx node bench/lockout.ts [N]`
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openDb } from '../apps/cloud/src/db/index.ts';
import { createSmartLockout } from '../apps/cloud/src/lockout/smart-lockout.ts';
import { createSecretBox } from '../apps/cloud/src/secrets.ts';

const n = Number(process.argv[2] ?? 5000);
const dir = mkdtempSync(join(tmpdir(), 'gh-bench-lockout-'));
const { db } = await openDb(`sqlite:${join(dir, 'db.sqlite')}`);
const lockout = createSmartLockout(db, createSecretBox(randomBytes(32)), Date.now);
const settings = { threshold: 10, durationS: 60 };
const origin = { ip: '192.0.2.10' };

const run = async (label: string, outcome: 'success' | 'invalid_credentials') => {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const user = `u${i % 1000}`;
    const a = await lockout.admit('t', user, `pw-${outcome}-${i}`, origin, settings, Date.now() + 10_000);
    if (a.kind === 'admit') await lockout.settle(a.reservation, outcome, settings);
    if (outcome !== 'success' && i % 1000 === 999)
      for (let u = 0; u < 1000; u++) await lockout.unlock('t', `u${u}`);
  }
  process.stdout.write(`${label}: ${(((performance.now() - t0) / n) * 1000).toFixed(0)} µs per sign-in\n`);
};

await run('success, familiar place', 'success');
await run('wrong password', 'invalid_credentials');
await db.destroy();
rmSync(dir, { recursive: true, force: true });
