/** The audit trail: who changed what in a tenant. Written by every admin entry point (CLI, admin API). */
import { TenantId } from '@gatehouse/protocol';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import { parse } from './util.ts';

export const AuditInput = z.object({
  tenantId: TenantId,
  /** "operator" for the CLI, otherwise the acting user's UPN or an agent id. */
  actor: z.string().min(1).max(256),
  action: z.string().min(1).max(64),
  target: z.string().max(512).optional(),
  /** Any JSON value; stored as JSON. Never put a secret here. */
  detail: z.unknown().optional(),
});
export type AuditInput = z.input<typeof AuditInput>;

export interface AuditEntry {
  id: number;
  tenantId: string;
  at: number;
  actor: string;
  action: string;
  target: string | null;
  detail: unknown;
}

export const audit = async (db: Db, input: AuditInput, now: number = Date.now()): Promise<void> => {
  const a = parse(AuditInput, input);
  await db
    .insertInto('audit')
    .values({
      tenant_id: a.tenantId,
      at: now,
      actor: a.actor,
      action: a.action,
      target: a.target ?? null,
      detail: a.detail === undefined ? null : JSON.stringify(a.detail),
    })
    .execute();
};

export const ListAuditOptions = z.object({
  limit: z.number().int().min(1).max(1000).default(100),
  /** Only entries with an id below this (paging backwards in time). */
  beforeId: z.number().int().positive().optional(),
});

/** Newest first. */
export const listAudit = async (
  db: Db,
  tenantId: string,
  options: z.input<typeof ListAuditOptions> = {},
): Promise<AuditEntry[]> => {
  const o = parse(ListAuditOptions, options);
  let q = db.selectFrom('audit').selectAll().where('tenant_id', '=', tenantId);
  if (o.beforeId !== undefined) q = q.where('id', '<', o.beforeId);
  const rows = await q.orderBy('id', 'desc').limit(o.limit).execute();
  return rows.map((r) => ({
    id: r.id,
    tenantId: r.tenant_id,
    at: r.at,
    actor: r.actor,
    action: r.action,
    target: r.target,
    detail: r.detail === null ? null : (JSON.parse(r.detail) as unknown),
  }));
};

/** Retention: like pruneSignIns (sign-ins.ts), at most `batch` of the tenant's rows older than `before`. */
export const pruneAudit = async (
  db: Db,
  tenantId: string,
  before: number,
  batch: number,
): Promise<number> => {
  const r = await db
    .deleteFrom('audit')
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('audit')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('at', '<', before)
        .limit(batch),
    )
    .executeTakeFirst();
  return Number(r.numDeletedRows);
};
