/** Pure parts of the directory code: AD intervals, ppolicy times and states, the timing floor, error mapping. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mapBindError } from '../src/directory/outcome.ts';
import { adLockoutDurationS } from '../src/directory/policy.ts';
import { ADMIN_LOCK, generalizedTime, lockedOutcome } from '../src/directory/ppolicy.ts';
import { FailureTimingFloor } from '../src/directory/timing.ts';

test('AD lockoutDuration: negative 100-ns intervals; "never" and non-negative mean until unlocked (0)', () => {
  assert.equal(adLockoutDurationS('-18000000000'), 1800);
  assert.equal(adLockoutDurationS('-9223372036854775808'), 0);
  assert.equal(adLockoutDurationS('0'), 0);
  assert.equal(adLockoutDurationS(undefined), 0);
  assert.equal(adLockoutDurationS('garbage'), 0);
});

test('ppolicy: generalized time and why slapd said "account locked"', () => {
  assert.equal(generalizedTime('20200101000000Z'), Date.UTC(2020, 0, 1));
  assert.equal(generalizedTime('20261125174944.044734Z'), Date.UTC(2026, 10, 25, 17, 49, 44));
  assert.ok(Number.isNaN(generalizedTime('yesterday')));
  const now = Date.UTC(2026, 0, 1);
  assert.equal(lockedOutcome({ pwdAccountLockedTime: ADMIN_LOCK }, now).outcome, 'invalid_credentials');
  assert.equal(lockedOutcome({ pwdAccountLockedTime: '20251231235959Z' }, now).outcome, 'locked_out');
  assert.equal(lockedOutcome({ pwdEndTime: '20251231000000Z' }, now).directoryCode, '49/ppolicy:pwdEndTime');
  assert.equal(lockedOutcome({ pwdEndTime: '20270101000000Z' }, now).outcome, 'locked_out');
  assert.equal(lockedOutcome({ pwdStartTime: '20270101000000Z' }, now).outcome, 'invalid_credentials');
  assert.equal(lockedOutcome(undefined, now).outcome, 'locked_out');
});

test('error mapping: a connect timeout is unreachable, an operation timeout is a timeout', () => {
  assert.deepEqual(mapBindError(new Error('Connection timeout')), {
    outcome: 'directory_unreachable',
    directoryCode: 'net:connect-timeout',
    serverFailure: true,
  });
  assert.equal(mapBindError(new Error('Timeout waiting for response')).outcome, 'directory_timeout');
  assert.equal(mapBindError({ code: 49, message: 'x, data 775, v1db1' }).outcome, 'locked_out');
});

test('timing floor: rises at once, decays only with time, capped, off at 0', () => {
  const f = new FailureTimingFloor(100, 1000);
  assert.equal(f.current(0), 0);
  f.observe(20, 0);
  assert.equal(f.current(0), 20);
  // A flood of fast answers does not pull it down...
  for (let i = 0; i < 1000; i++) f.observe(1, 0);
  assert.equal(f.current(0), 20);
  // ...time does (half-life 1 s).
  assert.ok(Math.abs(f.current(1000) - 10) < 1e-9);
  f.observe(5000, 1000);
  assert.equal(f.current(1000), 100);
  const off = new FailureTimingFloor(0);
  off.observe(50);
  assert.equal(off.current(), 0);
});

test('timing floor: hold waits until started + floor, never past the deadline', async () => {
  const f = new FailureTimingFloor(1000, 1e9);
  f.observe(60);
  let t0 = performance.now();
  await f.hold(t0, t0 + 5000);
  assert.ok(performance.now() - t0 >= 55);
  // A 900 ms floor against a 20 ms deadline: the deadline wins (slack for a loaded machine).
  f.observe(900);
  t0 = performance.now();
  await f.hold(t0, t0 + 20);
  assert.ok(performance.now() - t0 < 400);
});
