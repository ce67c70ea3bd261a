/**
 * Retention in the background on a serving cloud: a 100,000-row sign-in log past its retention is
 * pruned by the cloud's own sweep (batches with pauses) while a password-grant loop through a
 * real agent and slapd runs, and the loop sees no error. Rows inside retention, including every
 * row the loop itself logged, stay. The latency cost is measured by bench/retention.ts.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { waitFor } from './harness/children.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'retention.test';
const PW = `Retention-${Math.random().toString(36).slice(2, 8)}-Pw1`;
const USERS = ['t1', 't2', 't3', 't4'];
const DAY = 86_400_000;
const ROWS = 100_000;
let slapd: SlapdInstance;
let stack: Stack;

before(async () => {
  slapd = await startSlapd({ users: USERS.map((uid) => ({ uid, password: PW })) });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
      extra: { upnAttribute: 'uid', upnDomain: DOMAIN },
    },
    expectUsers: USERS.map((u) => `${u}@${DOMAIN}`),
    cloud: { retentionSweepMs: 1000, signInRetentionDays: 30 },
  });
});
after(async () => {
  await stack?.stop();
  await slapd?.stop();
});

const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))] ?? 0;

test('a 100,000-row sign-in log is pruned in the background while sign-ins run, none fails', async () => {
  const db = stack.cloud.ctx.db;
  const codes: string[] = [];
  const ms: number[] = [];
  let running = true;
  const loops = USERS.map(async (u) => {
    while (running) {
      const t0 = performance.now();
      codes.push((await stack.passwordGrant(`${u}@${DOMAIN}`, PW)).code);
      ms.push(performance.now() - t0);
    }
  });
  const oldCount = async () =>
    Number(
      (
        await db
          .selectFrom('signins')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('at', '<', Date.now() - 30 * DAY)
          .executeTakeFirstOrThrow()
      ).n,
    );
  try {
    const old = Date.now() - 31 * DAY;
    for (let i = 0; i < ROWS; i += 1000) {
      await db
        .insertInto('signins')
        .values(
          Array.from({ length: 1000 }, (_, j) => ({
            tenant_id: stack.tenantId,
            at: old - i - j,
            request_id: `old-${i + j}`,
            upn: `gone${(i + j) % 5000}@${DOMAIN}`,
            method: 'password_grant',
            outcome: 'success',
            total_ms: 3,
          })),
        )
        .execute();
    }
    const recent = Date.now() - 29 * DAY;
    await db
      .insertInto('signins')
      .values({
        tenant_id: stack.tenantId,
        at: recent,
        request_id: 'kept',
        upn: `kept@${DOMAIN}`,
        method: 'password_grant',
        outcome: 'success',
        total_ms: 3,
      })
      .execute();
    const start = ms.length;
    await waitFor('the sweep to prune every old row', async () => (await oldCount()) === 0, 120_000, 200);
    const during = ms.slice(start);
    process.stdout.write(
      `# ${during.length} sign-ins while ${ROWS} rows were pruned: p50 ${pct(during, 0.5).toFixed(1)} ms, p99 ${pct(during, 0.99).toFixed(1)} ms\n`,
    );
    assert.ok(during.length > 0, 'the loop ran during the prune');
  } finally {
    running = false;
    await Promise.all(loops);
  }
  assert.deepEqual([...new Set(codes)], ['success'], 'no sign-in failed');
  const left = await stack.signIns();
  assert.ok(
    left.some((r) => r.request_id === 'kept'),
    'a row inside retention stays',
  );
  assert.equal(
    left.filter((r) => r.request_id !== 'kept').length,
    codes.length,
    'every row the loop logged stays, and nothing else',
  );
});
