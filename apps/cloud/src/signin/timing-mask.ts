/**
 * Answers that need no real check (an unknown user name, a wrong password repeated) would come
 * back faster than a real wrong password, which costs a directory bind or a scrypt verification.
 * That gap tells an attacker which names exist. The mask keeps, per tenant, the times real
 * wrong-password answers took and holds the fast answers for one of them, drawn at random, so both
 * come from the same distribution.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** Samples kept per tenant; enough to follow the directory's latency, small enough to adapt fast. */
const SAMPLES = 64;
/** Below this many samples the mask falls back to a real scrypt verification (the caller's). */
const MIN_SAMPLES = 8;
/** No answer is held longer than this, whatever was measured. */
const MAX_HOLD_MS = 2_000;

/**
 * Waits until performance.now() reaches `until`. A timer alone fires up to ~2 ms early (p50 0.3 ms)
 * measured this way, since it counts from the event loop's cached clock: the held answers came back
 * faster than the real ones they copy. The last millisecond is waited out by yielding to the loop.
 */
const holdUntil = async (until: number): Promise<void> => {
  for (let left = until - performance.now(); left > 0; left = until - performance.now())
    await (left >= 1 ? sleep(left) : new Promise((resolve) => setImmediate(resolve)));
};

export interface TimingMask {
  /** Records how long a real wrong-password answer took (ms). */
  record(tenantId: string, ms: number): void;
  /** Waits until `elapsedMs` reaches a recorded wrong-password time; false when it has too few samples. */
  hold(tenantId: string, elapsedMs: number): Promise<boolean>;
}

export const createTimingMask = (random: () => number = Math.random): TimingMask => {
  const rings = new Map<string, { values: number[]; next: number }>();
  return {
    record(tenantId, ms) {
      let ring = rings.get(tenantId);
      if (!ring) {
        ring = { values: [], next: 0 };
        rings.set(tenantId, ring);
        if (rings.size > 10_000) rings.delete(rings.keys().next().value!);
      }
      if (ring.values.length < SAMPLES) ring.values.push(ms);
      else ring.values[ring.next] = ms;
      ring.next = (ring.next + 1) % SAMPLES;
    },
    async hold(tenantId, elapsedMs) {
      const ring = rings.get(tenantId);
      if (!ring || ring.values.length < MIN_SAMPLES) return false;
      const target = Math.min(ring.values[Math.floor(random() * ring.values.length)]!, MAX_HOLD_MS);
      await holdUntil(performance.now() + target - elapsedMs);
      return true;
    },
  };
};
