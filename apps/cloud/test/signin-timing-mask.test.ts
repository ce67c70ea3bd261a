import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { createTimingMask } from '../src/signin/timing-mask.ts';

test('fast answers are held for a recorded wrong-password time, once there are enough samples', async () => {
  const mask = createTimingMask(() => 0.5);
  for (let i = 0; i < 7; i++) mask.record('t', 60);
  assert.equal(await mask.hold('t', 0), false, 'too few samples: the caller does a real scrypt check');
  mask.record('t', 60);
  const t0 = performance.now();
  assert.equal(await mask.hold('t', 10), true);
  const held = performance.now() - t0;
  assert.ok(held >= 45 && held < 200, `held ${held.toFixed(1)} ms for a 60 ms sample with 10 ms elapsed`);
  assert.equal(await mask.hold('other-tenant', 0), false, 'samples are per tenant');
});

test('the ring keeps the latest samples and never holds past the cap', async () => {
  const mask = createTimingMask(() => 0.99);
  for (let i = 0; i < 64; i++) mask.record('t', 100_000);
  const t0 = performance.now();
  await mask.hold('t', 1_990);
  assert.ok(performance.now() - t0 < 100, 'capped at 2 s in all');
  for (let i = 0; i < 64; i++) mask.record('t', 5);
  const t1 = performance.now();
  await mask.hold('t', 0);
  assert.ok(performance.now() - t1 < 50, 'old samples are gone');
});

test('a held answer never comes back before its sample, whatever the event loop was doing', async () => {
  const mask = createTimingMask(() => 0);
  for (let i = 0; i < 8; i++) mask.record('t', 6);
  const early: number[] = [];
  for (let i = 0; i < 40; i++) {
    // Work before the hold leaves the loop's cached clock behind, as a request's own work does.
    const busy = performance.now();
    while (performance.now() - busy < 2);
    const t0 = performance.now();
    await mask.hold('t', 0);
    const held = performance.now() - t0;
    if (held < 6) early.push(held);
  }
  assert.deepEqual(early, [], 'held for less than the 6 ms sample');
});
