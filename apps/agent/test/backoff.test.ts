import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from '../src/backoff.ts';

test('exponential from 1 s, capped at 60 s, jittered within [d/2, d)', () => {
  const lo = new Backoff({ random: () => 0 });
  const hi = new Backoff({ random: () => 0.999999 });
  const los = Array.from({ length: 10 }, () => lo.next());
  const his = Array.from({ length: 10 }, () => hi.next());
  assert.deepEqual(los, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  assert.deepEqual(his, [999, 1999, 3999, 7999, 15999, 31999, 59999, 59999, 59999, 59999]);
  // Never above the cap, however many attempts.
  for (let i = 0; i < 100; i++) assert.ok(hi.next() < 60_000);
});

test('jitter spreads a fleet: the same attempt gives different delays', () => {
  const delays = new Set(Array.from({ length: 50 }, () => new Backoff().next()));
  assert.ok(delays.size > 40, `only ${delays.size} distinct delays`);
  for (const d of delays) assert.ok(d >= 500 && d < 1000);
});

test('a connection that stayed up for the grace period resets the sequence; a short one does not', () => {
  let now = 0;
  const b = new Backoff({ graceMs: 30_000, now: () => now, random: () => 0 });
  b.next();
  b.next();
  b.next();
  b.connected();
  now += 5_000;
  b.disconnected();
  assert.equal(b.next(), 4000, 'flapping connection keeps backing off');
  b.connected();
  now += 30_000;
  b.disconnected();
  assert.equal(b.next(), 500, 'stable connection starts again from the base');
});
