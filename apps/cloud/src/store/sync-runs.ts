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
    /** The agent's full-sync interval (syncHealth). */
    intervalMinutes?: number;
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
        interval_minutes: run.intervalMinutes ?? null,
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

/** Without a successful run for this many full-sync intervals, sync is overdue. */
export const OVERDUE_INTERVALS = 3;
/** The agent's default full-sync interval, for runs that did not say theirs. */
export const DEFAULT_INTERVAL_MINUTES = 60;

export type SyncHealthState = 'ok' | 'running' | 'never' | 'guarded' | 'failed' | 'stalled' | 'overdue';

export interface SyncHealth {
  state: SyncHealthState;
  /** Whether an administrator should look: failed, stalled, overdue or guarded. */
  problem: boolean;
  message: string;
  lastRun: SyncRun | null;
  /** When the last run that succeeded (or was guarded) ended. */
  lastSuccessAt: number | null;
  intervalMinutes: number;
  overdueAfterMinutes: number;
}

/**
 * How the tenant's directory sync is doing, from its run records: the last run failed, is stalled
 * (running with no page for STALLED_AFTER_MS), no run succeeded within OVERDUE_INTERVALS full-sync
 * intervals (the agent's, as its last run said), or the last one held deletions back.
 */
export const syncHealth = async (db: Db, tenantId: string, now: number = Date.now()): Promise<SyncHealth> => {
  const row = await db
    .selectFrom('sync_runs')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('started_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  const last = row ? toRun(row, now) : undefined;
  const ok = await db
    .selectFrom('sync_runs')
    .select(['finished_at', 'interval_minutes'])
    .where('tenant_id', '=', tenantId)
    .where('status', 'in', ['succeeded', 'guarded'])
    .orderBy('finished_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  const lastInterval = row?.interval_minutes;
  const intervalMinutes = lastInterval ?? ok?.interval_minutes ?? DEFAULT_INTERVAL_MINUTES;
  const overdueAfterMinutes = intervalMinutes * OVERDUE_INTERVALS;
  const lastSuccessAt = ok?.finished_at == null ? null : Number(ok.finished_at);
  const base = { lastRun: last ?? null, lastSuccessAt, intervalMinutes, overdueAfterMinutes };
  const say = (state: SyncHealthState, message: string): SyncHealth => ({
    state,
    problem: ['failed', 'stalled', 'overdue', 'guarded'].includes(state),
    message,
    ...base,
  });
  if (!last) return say('never', 'No directory sync run yet.');
  if (last.status === 'failed')
    return say('failed', `The last sync run failed: ${last.error ?? 'no reason given'}.`);
  if (last.status === 'stalled')
    return say(
      'stalled',
      `A sync run has had no page for ${Math.round((now - last.updatedAt) / 60_000)} minutes.`,
    );
  const since = lastSuccessAt ?? last.startedAt;
  if (now - since > overdueAfterMinutes * 60_000)
    return say(
      'overdue',
      lastSuccessAt === null
        ? `No sync run has succeeded in ${Math.round((now - since) / 60_000)} minutes.`
        : `No sync run has succeeded for ${Math.round((now - since) / 60_000)} minutes (expected every ${intervalMinutes}).`,
    );
  if (last.status === 'guarded')
    return say('guarded', `The last sync run held deletions back: ${last.error ?? ''}`);
  if (last.status === 'running') return say('running', 'A sync run is in progress.');
  return say('ok', 'Directory sync is up to date.');
};
