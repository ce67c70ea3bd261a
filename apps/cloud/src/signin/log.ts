/**
 * The sign-in log. Sign-in is the hot path (2,000/s target), so rows are queued and written in
 * batches: one multi-row INSERT per ~25 ms or 256 rows. A row never holds the password.
 */
import type { Insertable } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { SignInTable } from '../db/schema.ts';
import { parse } from '../directory/util.ts';

export type SignInRow = Insertable<SignInTable>;

export interface SignInLog {
  write(row: SignInRow): void;
  /** Writes everything queued so far. */
  flush(): Promise<void>;
  /** Flushes and stops the timer; later writes are flushed on their own. */
  close(): Promise<void>;
}

export const createSignInLog = (
  db: Db,
  { log, flushMs = 25, maxBatch = 256 }: { log?: Logger; flushMs?: number; maxBatch?: number } = {},
): SignInLog => {
  let queue: SignInRow[] = [];
  let timer: NodeJS.Timeout | null = null;
  // Flushes run one after another so rows land in order and a batch never competes with itself.
  let chain: Promise<void> = Promise.resolve();

  const writeBatch = async (rows: SignInRow[]) => {
    try {
      await db.insertInto('signins').values(rows).execute();
    } catch (err) {
      // Losing log rows is bad; failing sign-ins because the log is unhappy is worse.
      log?.error({ err, rows: rows.length }, 'sign-in log write failed');
    }
  };

  const flush = (): Promise<void> => {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (queue.length > 0) {
      const rows = queue;
      queue = [];
      for (let i = 0; i < rows.length; i += maxBatch) {
        const batch = rows.slice(i, i + maxBatch);
        chain = chain.then(() => writeBatch(batch));
      }
    }
    return chain;
  };

  return {
    write(row) {
      queue.push(row);
      if (queue.length >= maxBatch) void flush();
      else if (!timer) {
        timer = setTimeout(() => void flush(), flushMs);
        timer.unref();
      }
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
