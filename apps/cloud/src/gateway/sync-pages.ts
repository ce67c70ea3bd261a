/**
 * One agent connection's sync pages: applied one after another, in order, while results and
 * heartbeats on the same connection never wait behind them; and paced (an agent sends the next
 * page only after the last one's sync.ack, so more than MAX_QUEUED_SYNC_PAGES queued is an agent
 * making the cloud hold its frames in memory). The runs' metrics are counted where runs are
 * applied (sync.ts).
 */
import type { SyncPage } from '@gatehouse/protocol';
import type { Logger } from 'pino';

/** Sync pages received but not yet applied. */
export const MAX_QUEUED_SYNC_PAGES = 8;

export class SyncPages {
  /** Pages received and not applied yet. */
  queued = 0;
  #chain: Promise<void> = Promise.resolve();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Queues a page behind the ones before it. False when too many are queued already (the caller
   * closes the connection). A page that fails is answered with `onFailed` and logged; the run then
   * restarts (the next page is out of order), so the connection stays.
   */
  push(msg: SyncPage, apply: () => Promise<void> | undefined, onFailed: () => void): boolean {
    if (this.queued >= MAX_QUEUED_SYNC_PAGES) {
      this.#log.warn({ queued: this.queued }, 'agent sends sync pages without waiting for sync.ack');
      return false;
    }
    this.queued++;
    this.#chain = this.#chain
      .then(apply)
      .catch((err: unknown) => {
        this.#log.error({ err, runId: msg.runId }, 'sync page failed');
        onFailed();
      })
      .finally(() => {
        this.queued--;
      });
    return true;
  }
}
