/**
 * The sign-in log's table (signins): the group-committed insert signin/log.ts batches rows into,
 * the admin listing and export, and retention's pruning.
 */
import type { Insertable } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { SignInTable } from '../db/schema.ts';
import { parse } from './util.ts';

export type SignInRow = Insertable<SignInTable>;

/** One multi-row INSERT: the whole batch commits or fails together (signin/log.ts splits a failed batch). */
export const insertSignIns = async (db: Db, rows: SignInRow[]): Promise<void> => {
  await db.insertInto('signins').values(rows).execute();
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

/** Sign-ins since `since` by agent: how many, and how many did not succeed. */
export const signInStatsByAgent = (db: Db, tenantId: string, since: number) =>
  db
    .selectFrom('signins')
    .select((eb) => [
      'agent_id',
      eb.fn.countAll<number>().as('total'),
      eb.fn.sum<number>(eb.case().when('outcome', '=', 'success').then(0).else(1).end()).as('failures'),
    ])
    .where('tenant_id', '=', tenantId)
    .where('at', '>', since)
    .groupBy('agent_id')
    .execute();
