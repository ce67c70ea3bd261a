/**
 * A bounded set of open connections, kept per server. User binds and service-account searches
 * each have their own pool, so a burst of sign-ins never waits behind a ppolicy read or a probe
 * (and a connection bound as a user is never used for a service search).
 */
import type { Client } from 'ldapts';
import { Semaphore } from './semaphore.ts';
import { isUsable } from './servers.ts';

const close = (c: Client) => void c.unbind().catch(() => {});

export class ConnectionPool {
  readonly #permits: Semaphore;
  readonly #idle = new Map<string, { c: Client; since: number }[]>();
  readonly #maxIdleMs: number;
  #closed = false;

  /**
   * `maxIdleMs`: an idle connection older than this is closed instead of reused (a firewall may
   * have dropped it silently, and a bind on it would wait for the whole timeout).
   */
  constructor(size: number, maxIdleMs = 60_000) {
    this.#permits = new Semaphore(size);
    this.#maxIdleMs = maxIdleMs;
  }

  /** Takes one of `size` permits; false when `deadline` (performance.now() ms) passed first. */
  acquire(deadline: number): Promise<boolean> {
    return this.#permits.acquire(deadline);
  }

  release(): void {
    this.#permits.release();
  }

  /** An idle connection to `url` that is still open (dropped ones are closed, not reopened). */
  take(url: string): Client | undefined {
    const list = this.#idle.get(url);
    const now = performance.now();
    for (let e = list?.pop(); e; e = list?.pop()) {
      if (isUsable(e.c) && now - e.since < this.#maxIdleMs) return e.c;
      close(e.c);
    }
    return undefined;
  }

  put(url: string, c: Client): void {
    if (this.#closed || !isUsable(c)) {
      close(c);
      return;
    }
    const list = this.#idle.get(url) ?? [];
    list.push({ c, since: performance.now() });
    this.#idle.set(url, list);
  }

  /** Closes every idle connection to `url` (its server was marked down). */
  drop(url: string): void {
    for (const e of this.#idle.get(url) ?? []) close(e.c);
    this.#idle.delete(url);
  }

  /** Permits in use plus callers waiting for one. */
  get busy(): number {
    return this.#permits.busy;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#idle.values()].flat();
    this.#idle.clear();
    await Promise.all(all.map((e) => e.c.unbind().catch(() => {})));
  }
}
