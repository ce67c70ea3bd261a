/**
 * Reconnect backoff in the manner of cloudflared: exponential from `baseMs`, capped at `capMs`,
 * with jitter so a fleet of agents does not reconnect in lock step after a cloud restart, and a
 * reset once a connection has stayed up for `graceMs`. Clock and randomness are injectable.
 */
export interface BackoffOptions {
  baseMs?: number;
  capMs?: number;
  /** A connection that lasted this long counts as stable: the next failure starts from `baseMs`. */
  graceMs?: number;
  now?: () => number;
  random?: () => number;
}

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly graceMs: number;
  readonly #now: () => number;
  readonly #random: () => number;
  #attempt = 0;
  #connectedAt?: number;

  constructor(o: BackoffOptions = {}) {
    this.baseMs = o.baseMs ?? 1000;
    this.capMs = o.capMs ?? 60_000;
    this.graceMs = o.graceMs ?? 30_000;
    this.#now = o.now ?? Date.now;
    this.#random = o.random ?? Math.random;
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt: uniform in [d/2, d) with d = min(cap, base * 2^attempt). */
  next(): number {
    const d = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.floor(d / 2 + this.#random() * (d / 2));
  }

  connected(): void {
    this.#connectedAt = this.#now();
  }

  /** Call when a connection ends; resets the sequence if it had been stable. */
  disconnected(): void {
    if (this.#connectedAt !== undefined && this.#now() - this.#connectedAt >= this.graceMs) this.#attempt = 0;
    this.#connectedAt = undefined;
  }

  reset(): void {
    this.#attempt = 0;
  }
}
