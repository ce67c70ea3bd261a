/**
 * What recording metrics costs one sign-in, in CPU time: the calls a password grant through an
 * agent makes (metrics/observe.ts and the counters of the dispatcher, channel and lockout), with
 * an assumed number of database statements each. Prints one JSON line.
 *
 *   node bench/metrics-cost.ts [--iterations 200000]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { LogEvent } from 'kysely';
import { agentFrames, lockoutDecisions } from '../apps/cloud/src/metrics/families.ts';
import { observeQuery, observeSignIn, observeTokenIssued } from '../apps/cloud/src/metrics/observe.ts';

const { values: a } = parseArgs({ options: { iterations: { type: 'string', default: '200000' } } });
const n = Number(a.iterations);
/** Statements per agent sign-in, assumed (not counted): user lookup, lockout admit and settle, the log row, oidc-provider's grant and token rows. */
const STATEMENTS = 12;
const kinds = ['SelectQueryNode', 'InsertQueryNode', 'UpdateQueryNode', 'DeleteQueryNode'];
const events = kinds.map(
  (kind) => ({ level: 'query', queryDurationMillis: 0.4, query: { query: { kind } } }) as unknown as LogEvent,
);

const oneSignIn = (i: number) => {
  lockoutDecisions.inc({ decision: 'admit' });
  agentFrames.inc({ direction: 'out', type: 'validate' });
  agentFrames.inc({ direction: 'in', type: 'result' });
  for (let s = 0; s < STATEMENTS; s++) observeQuery(events[s % events.length]!);
  observeSignIn({
    method: 'password_grant',
    check: 'agent',
    outcome: i % 10 === 0 ? 'invalid_credentials' : 'success',
    totalMs: 40 + (i % 50),
    agentMs: 5 + (i % 7),
    directoryMs: 2 + (i % 5),
  });
  observeTokenIssued('password');
};

for (let i = 0; i < 20_000; i++) oneSignIn(i); // warm up
const cpu0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < n; i++) oneSignIn(i);
const wallMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const us = (x: number) => Math.round(x * 100) / 100;
process.stdout.write(
  `${JSON.stringify({
    iterations: n,
    statements_per_signin: STATEMENTS,
    cpu_us_per_signin: us((cpu.user + cpu.system) / n),
    wall_us_per_signin: us((wallMs * 1000) / n),
  })}\n`,
);
