/**
 * Answers that need no real check (an unknown user name, a wrong password repeated) would come
 * back faster than a real wrong password, which costs a directory bind or a scrypt verification.
 * That gap tells an attacker which names exist. The mask keeps, per tenant, the times real
 * wrong-password answers took and holds the fast answers for one of them, drawn at random, so both
 * come from the same distribution.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Samples kept per tenant; enough to follow the directory's latency, small enough to adapt fast. */
const SAMPLES = 64;
/** Below this many samples the mask falls back to a real scrypt verification (the caller's). */
const MIN_SAMPLES = 8;
/** No answer is held longer than this, whatever was measured. */
const MAX_HOLD_MS = 2_000;

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
      if (target > elapsedMs) await sleep(target - elapsedMs);
      return true;
    },
  };
};
