/**
 * The sign-in log, an audit record: a sign-in's row is committed before its answer leaves the
 * cloud, so no tokens are issued for a sign-in the log does not hold, even if the process is
 * killed the next instant. Rows are group-committed: each caller awaits the commit of the batch
 * holding its row, and the next batch is cut the moment the previous commit returns (rows that
 * arrived meanwhile share one multi-row INSERT). There is no timer on the critical path: an idle
 * cloud writes a lone row at once. A row never holds the password.
 */
import type { Logger } from 'pino';
import { directWrites, type GroupCommit } from '../db/group-commit.ts';
import type { Db } from '../db/index.ts';
import { insertSignIns, type SignInRow } from '../store/sign-ins.ts';

export type { SignInRow };

export interface SignInLog {
  /** Resolves once the row is committed; rejects if it could not be written. */
  write(row: SignInRow): Promise<void>;
  /** Resolves once every row written so far is committed (or has failed). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

interface Pending {
  row: SignInRow;
  done: (err?: unknown) => void;
}

export const createSignInLog = (
  db: Db,
  {
    log,
    maxBatch = 256,
    writes = directWrites(db),
  }: { log?: Logger; maxBatch?: number; writes?: GroupCommit } = {},
): SignInLog => {
  let queue: Pending[] = [];
  let writing: Promise<void> | null = null;

  const commit = async (batch: Pending[]) => {
    try {
      // Through the group commit: the batch commits with the other sign-in writes of the moment.
      const rows = batch.map((p) => p.row);
      await writes.run((tx) => insertSignIns(tx, rows));
      for (const p of batch) p.done();
      return;
    } catch (err) {
      if (batch.length === 1) {
        log?.error({ err, requestId: batch[0]!.row.request_id }, 'sign-in log write failed');
        batch[0]!.done(err);
        return;
      }
      log?.warn({ err, rows: batch.length }, 'sign-in log batch failed; writing its rows one by one');
    }
    // One bad row must not fail the sign-ins it happened to share a batch with.
    for (const p of batch) await commit([p]);
  };

  const drain = async () => {
    while (queue.length > 0) {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
      await commit(batch);
    }
    writing = null;
  };

  const flush = async () => {
    while (writing) await writing;
  };

  return {
    write(row) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ row, done: (err) => (err === undefined ? resolve() : reject(err)) });
        // setImmediate, not a timer: rows produced in this turn of the event loop join the batch,
        // and nothing waits for a clock.
        writing ??= new Promise<void>((r) => setImmediate(r)).then(drain);
      });
    },
    flush,
    close: flush,
  };
};
