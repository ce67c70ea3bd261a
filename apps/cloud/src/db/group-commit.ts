/**
 * Group commit for the sign-in path's small writes. A sign-in wrote four or five autocommits of its
 * own (the grant, the access token, smart lockout's settlement, the log row): on SQLite each commit
 * writes every page it dirtied to the WAL again, on PostgreSQL each is a WAL flush. Writes handed to
 * `run` in one turn of the event loop (and while the previous batch commits) share one
 * transaction; each caller's promise settles once that transaction has committed, so nothing that
 * must be durable before an answer is answered sooner than before.
 *
 * A batch that fails is rolled back and its writes run again one by one, so one bad write (or a
 * PostgreSQL deadlock between two nodes' batches) fails only its own caller. A lone write runs as
 * it is, without a transaction around it: batching never makes a write atomic that was not.
 */
import type { Logger } from 'pino';
import type { Db } from './index.ts';

export type Write = (db: Db) => Promise<unknown>;

export interface GroupCommit {
  /** Runs `write` in the next batch; resolves once the batch committed, rejects if the write failed. */
  run(write: Write): Promise<void>;
  /** Resolves once every write handed over so far has committed or failed. */
  flush(): Promise<void>;
}

/** Each write on its own, as it comes: for the CLI and for tests that do not exercise batching. */
export const directWrites = (db: Db): GroupCommit => ({
  run: async (write) => {
    await write(db);
  },
  flush: async () => {},
});

/** An item waiting in a batch queue, and how its caller is told the batch's outcome for it. */
export interface Queued<T> {
  item: T;
  done: (err?: unknown) => void;
}

/**
 * Items pushed in one turn of the event loop (and while the previous batch runs) are handed to
 * `commit` together, at most `maxBatch` at a time. `commit` settles every item's `done` and never
 * throws. setImmediate, not a timer: nothing waits for a clock, and an idle queue runs at once.
 */
export const batchQueue = <T>(commit: (batch: Queued<T>[]) => Promise<void>, maxBatch: number) => {
  const queue: Queued<T>[] = [];
  let running: Promise<void> | null = null;
  const drain = async () => {
    while (queue.length > 0) await commit(queue.splice(0, maxBatch));
    running = null;
  };
  return {
    push: (item: T) =>
      new Promise<void>((resolve, reject) => {
        queue.push({ item, done: (err) => (err === undefined ? resolve() : reject(err)) });
        running ??= new Promise<void>((r) => setImmediate(r)).then(drain);
      }),
    async flush() {
      while (running) await running;
    },
  };
};

export const createGroupCommit = (
  db: Db,
  { log, maxBatch = 128 }: { log?: Logger; maxBatch?: number } = {},
): GroupCommit => {
  const alone = async (p: Queued<Write>) => {
    try {
      await p.item(db);
      p.done();
    } catch (err) {
      p.done(err);
    }
  };

  const commit = async (batch: Queued<Write>[]) => {
    if (batch.length === 1) return alone(batch[0]!);
    try {
      await db.transaction().execute(async (tx) => {
        for (const p of batch) await p.item(tx);
      });
    } catch (err) {
      log?.warn({ err, writes: batch.length }, 'group commit failed; running its writes one by one');
      for (const p of batch) await alone(p);
      return;
    }
    for (const p of batch) p.done();
  };

  const queue = batchQueue(commit, maxBatch);
  return { run: queue.push, flush: queue.flush };
};
