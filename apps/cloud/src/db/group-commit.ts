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

interface Pending {
  write: Write;
  done: (err?: unknown) => void;
}

export const createGroupCommit = (
  db: Db,
  { log, maxBatch = 128 }: { log?: Logger; maxBatch?: number } = {},
): GroupCommit => {
  let queue: Pending[] = [];
  let writing: Promise<void> | null = null;

  const alone = async (p: Pending) => {
    try {
      await p.write(db);
      p.done();
    } catch (err) {
      p.done(err);
    }
  };

  const commit = async (batch: Pending[]) => {
    if (batch.length === 1) return alone(batch[0]!);
    try {
      await db.transaction().execute(async (tx) => {
        for (const p of batch) await p.write(tx);
      });
    } catch (err) {
      log?.warn({ err, writes: batch.length }, 'group commit failed; running its writes one by one');
      for (const p of batch) await alone(p);
      return;
    }
    for (const p of batch) p.done();
  };

  const drain = async () => {
    while (queue.length > 0) {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
      await commit(batch);
    }
    writing = null;
  };

  return {
    run(write) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ write, done: (err) => (err === undefined ? resolve() : reject(err)) });
        // setImmediate, not a timer: writes made in this turn of the event loop join the batch,
        // and an idle cloud writes a lone one at once.
        writing ??= new Promise<void>((r) => setImmediate(r)).then(drain);
      });
    },
    async flush() {
      while (writing) await writing;
    },
  };
};
