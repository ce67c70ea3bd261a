/**
 * What the per-sign-in log event costs: the same call the authenticator makes (an info line on a
 * request's child logger, through the cloud's logger with its redaction), to /dev/null, so the
 * figure is the cloud's CPU per event without a disk. `node bench/signin-event.ts [--count N]`
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createLogger } from '../apps/cloud/src/http/logger.ts';

const { values } = parseArgs({ options: { count: { type: 'string', default: '200000' } } });
const count = Number(values.count);
const root = createLogger({ logLevel: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
const event = (log: typeof root, i: number) =>
  log.info(
    {
      signInId: randomUUID(),
      tenantId: '0b6f3c1e-2f43-4d0e-9d1c-4c2b8e1f5a77',
      method: 'password_grant',
      outcome: i % 10 === 0 ? 'invalid_credentials' : 'success',
      userId: 'b1f0c0de-0000-4000-8000-000000000001',
      clientId: 'c0ffee00-0000-4000-8000-000000000002',
      agentId: 'a9e47000-0000-4000-8000-000000000003',
      directoryCode: null,
      agentMs: 4.21,
      directoryMs: 2.05,
      totalMs: 12.34,
    },
    'sign-in',
  );
const run = (label: string, fn: (i: number) => void) => {
  for (let i = 0; i < 20_000; i++) fn(i); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) fn(i);
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const us = ((cpu.user + cpu.system) / count).toFixed(2);
  console.log(`${label}: ${((wall * 1000) / count).toFixed(2)} µs wall, ${us} µs CPU per event`);
  return Number(us);
};
// A child per request, as fastify makes one (req.log with reqId), then the event on it.
const perRequest = run('child logger + event', (i) => event(root.child({ reqId: `req-${i}` }), i));
const child = root.child({ reqId: 'req-1' });
const eventOnly = run('event on the request logger fastify already made', (i) => event(child, i));
const uuidOnly = run('the event fields alone (no log call)', () => randomUUID());
console.log(
  JSON.stringify({
    count,
    child_and_event_cpu_us: perRequest,
    event_cpu_us: eventOnly,
    baseline_cpu_us: uuidOnly,
  }),
);
