/**
 * Equal timing for failed binds. A directory answers "no such user" faster than "wrong password"
 * (AD and ppolicy write a failure counter for a real account; slapd does not even hash for an
 * unknown DN), and the difference would tell an attacker which names exist.
 *
 * The floor is a slowly decaying maximum of how long real binds took (successful and failed: a
 * successful bind costs about what a wrong password does, and there are many of them, so the floor
 * is already up before the first wrong password arrives). Every invalid_credentials answer is held
 * back until that floor, never beyond `capMs` nor the request's deadline. A flood of fast unknown
 * names cannot pull the floor down quickly: it only decays with time (half-life `halfLifeMs`).
 */
export class FailureTimingFloor {
  readonly capMs: number;
  readonly #halfLifeMs: number;
  #value = 0;
  #at = 0;

  constructor(capMs: number, halfLifeMs = 10 * 60_000) {
    this.capMs = capMs;
    this.#halfLifeMs = halfLifeMs;
  }

  /** The floor at `now` (performance.now() ms). */
  current(now = performance.now()): number {
    if (this.capMs <= 0 || this.#value === 0) return 0;
    return Math.min(this.capMs, this.#value * 0.5 ** ((now - this.#at) / this.#halfLifeMs));
  }

  /** Records how long one bind took at the directory. */
  observe(ms: number, now = performance.now()): void {
    if (this.capMs <= 0 || !Number.isFinite(ms) || ms < 0) return;
    this.#value = Math.max(this.current(now), Math.min(ms, this.capMs));
    this.#at = now;
  }

  /** Waits until `started + floor`, but never past `deadline` (both performance.now() ms). */
  async hold(started: number, deadline: number): Promise<void> {
    const now = performance.now();
    const until = Math.min(started + this.current(now), deadline - 5);
    if (until > now) await new Promise((r) => setTimeout(r, until - now));
  }
}
