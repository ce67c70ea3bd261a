/** Counts the pooled connections in use; a waiter gives up at its deadline instead of queueing forever. */
interface Waiter {
  resolve: () => void;
  cancelled: boolean;
}

export class Semaphore {
  readonly size: number;
  #free: number;
  readonly #waiters: Waiter[] = [];

  constructor(size: number) {
    this.size = size;
    this.#free = size;
  }

  /** Resolves true when a permit is taken, false when `deadline` (performance.now() ms) passed first. */
  acquire(deadline: number): Promise<boolean> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const w: Waiter = { resolve: () => {}, cancelled: false };
      const t = setTimeout(
        () => {
          w.cancelled = true;
          resolve(false);
        },
        Math.max(1, deadline - performance.now()),
      );
      w.resolve = () => {
        clearTimeout(t);
        resolve(true);
      };
      this.#waiters.push(w);
    });
  }

  release(): void {
    for (let w = this.#waiters.shift(); w; w = this.#waiters.shift()) {
      if (!w.cancelled) {
        w.resolve();
        return;
      }
    }
    this.#free++;
  }

  /** Permits in use plus callers waiting for one. */
  get busy(): number {
    return this.size - this.#free + this.#waiters.filter((w) => !w.cancelled).length;
  }
}
