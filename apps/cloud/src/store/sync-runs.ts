/**
 * One record per directory sync run: who ran it (agent, directory server), when, how far it got
 * (pages so far of how many) and what it did (users and groups added, updated, deleted). A run
 * that stops being updated while running is shown as stalled, so a hung agent is visible.
 */
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { SyncRunTable } from '../db/schema.ts';
import { parse } from './util.ts';

/** A running run with no page for this long is stalled (the agent waits 60 s for each ack). */
export const STALLED_AFTER_MS = 120_000;

export interface SyncCounts {
  usersSeen: number;
  usersAdded: number;
  usersUpdated: number;
  usersDeleted: number;
  groupsSeen: number;
  groupsAdded: number;
  groupsUpdated: number;
  groupsDeleted: number;
  /** Users whose group memberships changed. */
  membershipsChanged: number;
  /** Items that could not be applied (e.g. a UPN held by a cloud-only account). */
  skipped: number;
}

export const emptyCounts = (): SyncCounts => ({
  usersSeen: 0,
  usersAdded: 0,
  usersUpdated: 0,
  usersDeleted: 0,
  groupsSeen: 0,
  groupsAdded: 0,
  groupsUpdated: 0,
  groupsDeleted: 0,
  membershipsChanged: 0,
  skipped: 0,
});

export type SyncRunStatus = 'running' | 'stalled' | 'succeeded' | 'guarded' | 'failed';

export interface SyncRun {
  id: string;
  tenantId: string;
  agentId: string;
  server: string | null;
  /** full: the whole directory, deletions by absence; delta: changes since the agent's mark. */
  mode: 'full' | 'delta';
  status: SyncRunStatus;
  startedAt: number;
  updatedAt: number;
  finishedAt: number | null;
  pages: number;
  totalPages: number | null;
  counts: SyncCounts;
  error: string | null;
}

const toRun = (r: SyncRunTable, now: number): SyncRun => {
  const status = r.status as SyncRunStatus;
  return {
    id: r.id,
    tenantId: r.tenant_id,
    agentId: r.agent_id,
    server: r.server,
    mode: r.mode === 'delta' ? 'delta' : 'full',
    status: status === 'running' && now - Number(r.updated_at) > STALLED_AFTER_MS ? 'stalled' : status,
    startedAt: Number(r.started_at),
    updatedAt: Number(r.updated_at),
    finishedAt: r.finished_at === null ? null : Number(r.finished_at),
    pages: r.pages,
    totalPages: r.total_pages,
    counts: { ...emptyCounts(), ...(JSON.parse(r.counts) as Partial<SyncCounts>) },
    error: r.error,
  };
};

/** Starts a run's record; a run id seen before (an agent starting it again) starts over. */
export const startSyncRun = async (
  db: Db,
  run: {
    tenantId: string;
    id: string;
    agentId: string;
    mode?: 'full' | 'delta';
    server?: string;
    totalPages?: number;
  },
  now: number,
): Promise<void> => {
  await db.transaction().execute(async (trx) => {
    await trx
      .deleteFrom('sync_runs')
      .where('tenant_id', '=', run.tenantId)
      .where('id', '=', run.id)
      .execute();
    await trx
      .insertInto('sync_runs')
      .values({
        tenant_id: run.tenantId,
        id: run.id,
        agent_id: run.agentId,
        server: run.server ?? null,
        mode: run.mode ?? 'full',
        status: 'running',
        started_at: now,
        updated_at: now,
        finished_at: null,
        pages: 0,
        total_pages: run.totalPages ?? null,
        counts: JSON.stringify(emptyCounts()),
        error: null,
      })
      .execute();
  });
};

/** Progress after each applied page. */
export const updateSyncRun = async (
  db: Db,
  tenantId: string,
  id: string,
  progress: { pages: number; counts: SyncCounts },
  now: number,
): Promise<void> => {
  await db
    .updateTable('sync_runs')
    .set({ pages: progress.pages, counts: JSON.stringify(progress.counts), updated_at: now })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .execute();
};

/** The run's end: succeeded, guarded (deletions held back), or failed with the reason. */
export const finishSyncRunRecord = async (
  db: Db,
  tenantId: string,
  id: string,
  end: { status: 'succeeded' | 'guarded' | 'failed'; counts?: SyncCounts; pages?: number; error?: string },
  now: number,
): Promise<void> => {
  await db
    .updateTable('sync_runs')
    .set({
      status: end.status,
      finished_at: now,
      updated_at: now,
      ...(end.counts ? { counts: JSON.stringify(end.counts) } : {}),
      ...(end.pages !== undefined ? { pages: end.pages } : {}),
      error: end.error ? end.error.slice(0, 512) : null,
    })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('status', '=', 'running')
    .execute();
};

export const ListSyncRunsOptions = z.object({
  limit: z.number().int().min(1).max(500).default(20),
  /** Runs that started before this (ms since epoch): the next page. */
  before: z.number().int().nonnegative().optional(),
});

/** The tenant's runs, newest first. */
export const listSyncRuns = async (
  db: Db,
  tenantId: string,
  options: z.input<typeof ListSyncRunsOptions> = {},
  now: number = Date.now(),
): Promise<SyncRun[]> => {
  const o = parse(ListSyncRunsOptions, options);
  let q = db.selectFrom('sync_runs').selectAll().where('tenant_id', '=', tenantId);
  if (o.before !== undefined) q = q.where('started_at', '<', o.before);
  const rows = await q.orderBy('started_at', 'desc').limit(o.limit).execute();
  return rows.map((r) => toRun(r, now));
};

export const getSyncRun = async (
  db: Db,
  tenantId: string,
  id: string,
  now: number = Date.now(),
): Promise<SyncRun | null> => {
  const r = await db
    .selectFrom('sync_runs')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
  return r ? toRun(r, now) : null;
};
