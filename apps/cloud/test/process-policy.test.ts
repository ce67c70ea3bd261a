/**
 * The cloud's process failure policy (process-policy.ts), in a real child process: an unhandled
 * rejection is logged, counted on the /metrics registry and the process keeps serving; an
 * uncaught exception is logged, counted and hands over to the drain (which exits 1).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

const POLICY = join(import.meta.dirname, '..', 'src', 'process-policy.ts');

const script = `
import pino from 'pino';
import { register } from 'prom-client';
import { installProcessPolicy } from ${JSON.stringify(POLICY)};
const log = pino({ level: 'info' });
installProcessPolicy({
  log,
  onFatal: async () => {
    const m = await register.getSingleMetricAsString('gatehouse_process_failures_total');
    process.stdout.write('DRAIN ' + JSON.stringify(m) + '\\n');
    process.exit(1);
  },
});
// A server that must keep answering after the rejection.
let served = 0;
const tick = setInterval(() => served++, 10);
Promise.reject(new Error('bug-in-one-request'));
setTimeout(async () => {
  const m = await register.getSingleMetricAsString('gatehouse_process_failures_total');
  process.stdout.write('ALIVE ' + served + ' ' + JSON.stringify(m) + '\\n');
  clearInterval(tick);
  setTimeout(() => { throw new Error('bug-in-sync-code'); }, 10);
}, 300);
`;

test('a rejection is logged and counted and the process serves on; an uncaught exception drains it', async () => {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: join(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  assert.equal(code, 1, out);
  const lines = out.split('\n').filter(Boolean);
  const logs = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const rejection = logs.find((l) => l.kind === 'unhandled_rejection');
  assert.ok(rejection, out);
  assert.equal(rejection.level, 50);
  assert.match(JSON.stringify(rejection.err), /bug-in-one-request/);
  const alive = lines.find((l) => l.startsWith('ALIVE '));
  assert.ok(alive, `still running after the rejection: ${out}`);
  assert.ok(Number(alive.split(' ')[1]) > 5, 'the process kept doing its work');
  assert.match(alive, /kind=\\"unhandled_rejection\\"} 1/);
  const fatal = logs.find((l) => l.kind === 'uncaught_exception');
  assert.ok(fatal, out);
  assert.equal(fatal.level, 60);
  assert.match(JSON.stringify(fatal.err), /bug-in-sync-code/);
  const drain = lines.find((l) => l.startsWith('DRAIN '));
  assert.ok(drain, out);
  assert.match(drain, /kind=\\"uncaught_exception\\"} 1/);
});
