/**
 * The sign-in log, an audit record: a sign-in's row is committed before its answer leaves the
 * cloud, so no tokens are issued for a sign-in the log does not hold, even if the process is
 * killed the next instant. Rows are group-committed: each caller awaits the commit of the batch
 * holding its row, and the next batch is cut the moment the previous commit returns (rows that
 * arrived meanwhile share one multi-row INSERT). There is no timer on the critical path: an idle
 * cloud writes a lone row at once. A row never holds the password.
 */
import type { Insertable } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { SignInTable } from '../db/schema.ts';
import { parse } from '../store/util.ts';

export type SignInRow = Insertable<SignInTable>;

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
  { log, maxBatch = 256 }: { log?: Logger; maxBatch?: number } = {},
): SignInLog => {
  let queue: Pending[] = [];
  let writing: Promise<void> | null = null;

  const insert = (rows: SignInRow[]) => db.insertInto('signins').values(rows).execute();

  const commit = async (batch: Pending[]) => {
    try {
      await insert(batch.map((p) => p.row));
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

export interface SignInEntry {
  id: number;
  at: number;
  requestId: string;
  upn: string;
  userId: string | null;
  method: string;
  outcome: string;
  clientId: string | null;
  clientIp: string | null;
  agentId: string | null;
  server: string | null;
  directoryCode: string | null;
  agentMs: number | null;
  directoryMs: number | null;
  totalMs: number;
}

export const ListSignInsOptions = z.object({
  limit: z.number().int().min(1).max(1000).default(50),
  beforeId: z.number().int().positive().optional(),
  upn: z.string().max(256).optional(),
  outcome: z.string().max(64).optional(),
  result: z.enum(['success', 'failure']).optional(),
  agentId: z.string().max(128).optional(),
  /** Time range, ms since epoch, inclusive. */
  from: z.number().int().nonnegative().optional(),
  to: z.number().int().nonnegative().optional(),
});

/** Newest first. */
export const listSignIns = async (
  db: Db,
  tenantId: string,
  options: z.input<typeof ListSignInsOptions> = {},
): Promise<SignInEntry[]> => {
  const o = parse(ListSignInsOptions, options);
  let q = db.selectFrom('signins').selectAll().where('tenant_id', '=', tenantId);
  if (o.beforeId !== undefined) q = q.where('id', '<', o.beforeId);
  if (o.upn) q = q.where('upn', '=', o.upn.toLowerCase());
  if (o.outcome) q = q.where('outcome', '=', o.outcome);
  if (o.result === 'success') q = q.where('outcome', '=', 'success');
  if (o.result === 'failure') q = q.where('outcome', '!=', 'success');
  if (o.agentId) q = q.where('agent_id', '=', o.agentId);
  if (o.from !== undefined) q = q.where('at', '>=', o.from);
  if (o.to !== undefined) q = q.where('at', '<=', o.to);
  const rows = await q.orderBy('id', 'desc').limit(o.limit).execute();
  return rows.map((r) => ({
    id: r.id,
    at: r.at,
    requestId: r.request_id,
    upn: r.upn,
    userId: r.user_id,
    method: r.method,
    outcome: r.outcome,
    clientId: r.client_id,
    clientIp: r.client_ip,
    agentId: r.agent_id,
    server: r.server,
    directoryCode: r.directory_code,
    agentMs: r.agent_ms,
    directoryMs: r.directory_ms,
    totalMs: r.total_ms,
  }));
};

/** Every row the filters select, newest first, read a page at a time (for streamed exports). */
export async function* iterateSignIns(
  db: Db,
  tenantId: string,
  filters: Omit<z.input<typeof ListSignInsOptions>, 'limit' | 'beforeId'> = {},
): AsyncGenerator<SignInEntry> {
  let beforeId: number | undefined;
  for (;;) {
    const page = await listSignIns(db, tenantId, { ...filters, beforeId, limit: 1000 });
    yield* page;
    if (page.length < 1000) return;
    beforeId = page.at(-1)!.id;
  }
}

/**
 * Retention: deletes at most `batch` of the tenant's rows older than `before` and returns how
 * many went. One small statement at a time, along the (tenant_id, at) index, so the writer is
 * held only briefly and sign-ins' own inserts get in between batches (retention.ts).
 */
export const pruneSignIns = async (
  db: Db,
  tenantId: string,
  before: number,
  batch: number,
): Promise<number> => {
  const r = await db
    .deleteFrom('signins')
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('signins')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('at', '<', before)
        .limit(batch),
    )
    .executeTakeFirst();
  return Number(r.numDeletedRows);
};
