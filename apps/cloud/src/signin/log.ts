/**
 * The sign-in log, an audit record: a sign-in's row is committed before its answer leaves the
 * cloud, so no tokens are issued for a sign-in the log does not hold, even if the process is
 * killed the next instant. Rows are group-committed: each caller awaits the commit of the batch
 * holding its row, and the next batch is cut the moment the previous commit returns (rows that
 * arrived meanwhile share one multi-row INSERT). There is no timer on the critical path: an idle
 * cloud writes a lone row at once. A row never holds the password.
 */
import type { Logger } from 'pino';
import { batchQueue, directWrites, type GroupCommit, type Queued } from '../db/group-commit.ts';
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

export const createSignInLog = (
  db: Db,
  {
    log,
    maxBatch = 256,
    writes = directWrites(db),
  }: { log?: Logger; maxBatch?: number; writes?: GroupCommit } = {},
): SignInLog => {
  // Rows of the moment share one multi-row INSERT, which joins the group commit's transaction.
  const commit = async (batch: Queued<SignInRow>[]): Promise<void> => {
    try {
      const rows = batch.map((p) => p.item);
      await writes.run((tx) => insertSignIns(tx, rows));
      for (const p of batch) p.done();
      return;
    } catch (err) {
      if (batch.length === 1) {
        log?.error({ err, requestId: batch[0]!.item.request_id }, 'sign-in log write failed');
        batch[0]!.done(err);
        return;
      }
      log?.warn({ err, rows: batch.length }, 'sign-in log batch failed; writing its rows one by one');
    }
    // One bad row must not fail the sign-ins it happened to share a batch with.
    for (const p of batch) await commit([p]);
  };
  const queue = batchQueue(commit, maxBatch);
  return { write: queue.push, flush: queue.flush, close: queue.flush };
};
