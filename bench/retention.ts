/**
 * What the retention sweep costs sign-ins: the latency of a password-grant loop (a real agent
 * and slapd, the embedded SQLite cloud in this process) without a sweep, then while the sweep
 * deletes a 100,000-row sign-in log. Rounds alternate so a noisy neighbour hits both alike.
 *
 *   npx node bench/retention.ts [--rows 100000] [--rounds 2] [--seconds 8] [--concurrency 4]
 */
import { parseArgs } from 'node:util';
import { startSlapd } from '../test/harness/slapd.ts';
import { startStack } from '../test/harness/stack.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '4' },
  },
});
const ROWS = Number(values.rows);
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const DOMAIN = 'retention.bench';
const PW = 'Retention-Bench-Pw1';
const DAY = 86_400_000;
const users = Array.from({ length: CONCURRENCY }, (_, i) => `r${i}`);

const slapd = await startSlapd({ users: users.map((uid) => ({ uid, password: PW })) });
const stack = await startStack({
  domain: DOMAIN,
  directory: {
    kind: 'openldap',
    urls: [slapd.url],
    bindDn: slapd.serviceDn,
    bindPassword: slapd.servicePassword,
    baseDns: [slapd.peopleDn],
    extra: { upnAttribute: 'uid', upnDomain: DOMAIN },
  },
  expectUsers: users.map((u) => `${u}@${DOMAIN}`),
  cloud: { logLevel: 'warn', metricsPort: 'off' },
});

/** Runs the loop until `until` resolves; returns each sign-in's latency (ms) and the failures. */
const loop = async (until: Promise<unknown>) => {
  const ms: number[] = [];
  let failures = 0;
  let running = true;
  void until.then(() => (running = false));
  await Promise.all(
    users.map(async (u) => {
      while (running) {
        const t0 = performance.now();
        const r = await stack.passwordGrant(`${u}@${DOMAIN}`, PW);
        ms.push(performance.now() - t0);
        if (r.code !== 'success') failures++;
      }
    }),
  );
  return { ms, failures };
};

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]! * 10) / 10;
};
const summary = (r: { ms: number[]; failures: number }) => ({
  signIns: r.ms.length,
  failures: r.failures,
  p50: pct(r.ms, 0.5),
  p99: pct(r.ms, 0.99),
});

const plant = async () => {
  const old = Date.now() - 31 * DAY;
  for (let i = 0; i < ROWS; i += 1000) {
    const rows = Array.from({ length: Math.min(1000, ROWS - i) }, (_, j) => ({
      tenant_id: stack.tenantId,
      at: old - i - j,
      request_id: `old-${i + j}`,
      upn: `someone${(i + j) % 5000}@${DOMAIN}`,
      method: 'password_grant',
      outcome: 'success',
      client_id: 'bench',
      client_ip: '192.0.2.1',
      agent_id: 'agent',
      total_ms: 3,
    }));
    await stack.cloud.ctx.db.insertInto('signins').values(rows).execute();
  }
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
await loop(sleep(2000)); // warm-up
const results = [];
for (let round = 1; round <= ROUNDS; round++) {
  const baseline = summary(await loop(sleep(SECONDS * 1000)));
  await plant();
  const t0 = performance.now();
  let swept = { signIns: 0, audit: 0 };
  const during = summary(
    await loop(
      stack.cloud.retention.sweep().then((s) => {
        swept = s;
      }),
    ),
  );
  const sweepMs = Math.round(performance.now() - t0);
  const r = { round, baseline, duringSweep: { ...during, deleted: swept.signIns, sweepMs } };
  results.push(r);
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
await stack.stop();
await slapd.stop();
process.stdout.write(`${JSON.stringify({ rows: ROWS, concurrency: CONCURRENCY, results })}\n`);
