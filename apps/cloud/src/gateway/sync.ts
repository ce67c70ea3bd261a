/**
 * Directory sync ingestion: an agent streams a run as pages (groups first, then users with
 * the anchors of their groups); each page is applied at once, anchors are collected, and the
 * final page applies deletions behind the accidental-deletion guard: a full run deletes the users
 * and groups it did not list, a delta run only the users it names as deleted. A user the run
 * disables or deletes loses their sessions, grants and tokens at once (audited). Each page
 * is acknowledged so the agent can pace itself, and each run keeps a record (store/sync-runs.ts).
 * The agent may hang up at any await: conn.send is then a no-op, so nothing here throws for it.
 */
import type { SyncPage } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { Db } from '../db/index.ts';
import { syncRunApplied, syncRunEnded, syncRunStarted } from '../metrics/observe.ts';
import { audit } from '../store/audit.ts';
import {
  applyMemberships,
  finishGroupSync,
  replaceGroupMemberships,
  upsertSyncedGroups,
} from '../store/groups.ts';
import { revokeGrantsOfUser } from '../store/oidc-payloads.ts';
import {
  emptyCounts,
  finishSyncRunRecord,
  type SyncCounts,
  startSyncRun,
  updateSyncRun,
} from '../store/sync-runs.ts';
import {
  deleteSyncedUsersByAnchor,
  finishSyncRun,
  type SyncDeletion,
  upsertSyncedUsers,
} from '../store/users.ts';
import type { AgentConnection } from './connection.ts';

/** A run this large is a runaway agent, not a directory (the cloud would hold every anchor). */
export const MAX_ANCHORS_PER_RUN = 2_000_000;

interface Run {
  runId: string;
  mode: 'full' | 'delta';
  nextSeq: number;
  anchors: Set<string>;
  groupAnchors: Set<string>;
  /** Delta runs: anchors the agent saw deleted. */
  deletedAnchors: Set<string>;
  /** Delta runs: group anchor -> its users now (at any depth), replaced at the end of the run. */
  groupMembers: Map<string, Set<string>>;
  /** Anchors held in groupMembers (they count towards MAX_ANCHORS_PER_RUN). */
  memberAnchors: number;
  withGroups: boolean;
  counts: SyncCounts;
  /** performance.now() at the first page (metrics). */
  startedAt: number;
}

export interface SyncSummary {
  runId: string;
  mode: 'full' | 'delta';
  created: number;
  updated: number;
  deleted: number;
  skipped: number;
  deletionGuarded: boolean;
  groups: { created: number; updated: number; deleted: number };
}

export class SyncIngest {
  /** One run per connection: a new run (seq 0) replaces an unfinished one. */
  readonly #runs = new WeakMap<AgentConnection, Run>();
  readonly #db: Db;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #onFinished: ((tenantId: string, summary: SyncSummary) => void) | undefined;

  constructor(opts: {
    db: Db;
    log: Logger;
    now: () => number;
    onFinished?: (tenantId: string, s: SyncSummary) => void;
  }) {
    this.#db = opts.db;
    this.#log = opts.log;
    this.#now = opts.now;
    this.#onFinished = opts.onFinished;
  }

  /** The connection is gone: its unfinished run will never end, so its record says so. */
  async onClosed(conn: AgentConnection): Promise<void> {
    const run = this.#runs.get(conn);
    if (!run) return;
    this.#runs.delete(conn);
    await this.#fail(conn, run, 'the agent disconnected during the run', 'interrupted');
  }

  /** A run that ends unapplied: `failed` when a page could not be applied, else `interrupted`. */
  async #fail(
    conn: AgentConnection,
    run: Run,
    error: string,
    result: 'failed' | 'interrupted' = 'interrupted',
  ): Promise<void> {
    syncRunEnded(run.mode, result);
    await finishSyncRunRecord(
      this.#db,
      conn.tenantId,
      run.runId,
      { status: 'failed', counts: run.counts, pages: run.nextSeq, error },
      this.#now(),
    ).catch((err: unknown) => this.#log.warn({ err, runId: run.runId }, 'sync run record not updated'));
  }

  async onPage(conn: AgentConnection, page: SyncPage): Promise<void> {
    let run = this.#runs.get(conn);
    if (page.seq === 0) {
      if (run) {
        this.#log.warn({ agentId: conn.agentId, runId: run.runId }, 'sync run abandoned by a new one');
        await this.#fail(conn, run, 'abandoned: the agent started a new run');
      }
      run = {
        runId: page.runId,
        mode: page.mode,
        nextSeq: 0,
        anchors: new Set(),
        groupAnchors: new Set(),
        deletedAnchors: new Set(),
        groupMembers: new Map(),
        memberAnchors: 0,
        withGroups: page.withGroups === true,
        counts: emptyCounts(),
        startedAt: syncRunStarted(),
      };
      this.#runs.set(conn, run);
      await startSyncRun(
        this.#db,
        {
          tenantId: conn.tenantId,
          id: run.runId,
          agentId: conn.agentId,
          mode: page.mode,
          server: page.server,
          totalPages: page.total,
          intervalMinutes: page.intervalMinutes,
        },
        this.#now(),
      );
    }
    if (!run || run.runId !== page.runId || run.nextSeq !== page.seq) {
      this.#runs.delete(conn);
      if (run) await this.#fail(conn, run, `page ${page.seq} out of order`);
      conn.sendError(
        'protocol_error',
        `sync page ${page.runId}/${page.seq} is out of order; start the run again`,
      );
      return;
    }
    const groups = page.groups ?? [];
    const size = run.anchors.size + run.groupAnchors.size + run.deletedAnchors.size + run.memberAnchors;
    const incoming = (page.groupMembers ?? []).reduce((n, g) => n + g.users.length, 0);
    if (
      size + page.users.length + groups.length + (page.deletedUsers?.length ?? 0) + incoming >
      MAX_ANCHORS_PER_RUN
    ) {
      this.#runs.delete(conn);
      await this.#fail(conn, run, 'the run is too large');
      conn.sendError('protocol_error', 'the sync run is too large');
      return;
    }
    try {
      await this.#apply(conn.tenantId, run, page);
    } catch (err) {
      this.#runs.delete(conn);
      await this.#fail(conn, run, `page ${page.seq} could not be applied`, 'failed');
      throw err;
    }
    if (!page.final) {
      conn.send({ type: 'sync.ack', runId: run.runId, seq: page.seq });
      return;
    }
    this.#runs.delete(conn);
    try {
      await this.#finish(conn, run, page);
    } catch (err) {
      await this.#fail(conn, run, 'the run could not be finished', 'failed');
      throw err;
    }
  }

  /** The final page was applied: deletions, group members, the record, the audit row, the ack. */
  async #finish(conn: AgentConnection, run: Run, page: SyncPage): Promise<void> {
    // Applied once the whole run is in, so no token is issued from half of a group's list.
    if (run.mode === 'delta' && run.groupMembers.size > 0) {
      const m = await replaceGroupMemberships(this.#db, conn.tenantId, run.groupMembers);
      run.counts.membershipsChanged += m.changedUsers;
    }
    const fin = await this.#deleteUsers(conn.tenantId, run);
    // A run without groups (an agent that does not sync them) leaves the cloud's groups alone, and
    // so does a delta run: it lists only the groups that changed.
    const gfin =
      run.withGroups && run.mode === 'full'
        ? await finishGroupSync(this.#db, conn.tenantId, run.groupAnchors)
        : { deleted: 0, deletionGuarded: false };
    const c = run.counts;
    c.usersDeleted = fin.deleted;
    c.groupsDeleted = gfin.deleted;
    const guarded = fin.deletionGuarded || gfin.deletionGuarded;
    await finishSyncRunRecord(
      this.#db,
      conn.tenantId,
      run.runId,
      {
        status: guarded ? 'guarded' : 'succeeded',
        counts: c,
        pages: run.nextSeq,
        ...(guarded
          ? {
              error: `deletions held back: more than the threshold would go (${fin.deletionGuarded ? 'users' : 'groups'})`,
            }
          : {}),
      },
      this.#now(),
    );
    const summary: SyncSummary = {
      runId: run.runId,
      mode: run.mode,
      created: c.usersAdded,
      updated: c.usersUpdated,
      deleted: fin.deleted,
      skipped: c.skipped,
      deletionGuarded: guarded,
      groups: { created: c.groupsAdded, updated: c.groupsUpdated, deleted: gfin.deleted },
    };
    await audit(
      this.#db,
      {
        tenantId: conn.tenantId,
        actor: conn.agentId,
        action: 'sync.run',
        target: run.runId,
        detail: { ...summary, seen: run.anchors.size },
      },
      this.#now(),
    );
    syncRunApplied(run.mode, run.startedAt, summary);
    this.#log.info({ agentId: conn.agentId, ...summary }, 'sync run applied');
    if (guarded)
      this.#log.warn({ tenantId: conn.tenantId, runId: run.runId }, 'sync deletions refused by the guard');
    try {
      this.#onFinished?.(conn.tenantId, summary);
    } catch (err) {
      // A listener's bug is not the agent's: the run was applied, so it is still acknowledged.
      this.#log.error({ err, runId: run.runId }, 'sync listener failed');
    }
    const { runId: _, mode: __, groups: g, ...ack } = summary;
    conn.send({
      type: 'sync.ack',
      runId: run.runId,
      seq: page.seq,
      summary: run.withGroups ? { ...ack, groups: g } : ack,
    });
  }

  /** Full runs delete by absence, delta runs what they name; the users deleted lose their grants. */
  async #deleteUsers(tenantId: string, run: Run): Promise<SyncDeletion> {
    const fin =
      run.mode === 'full'
        ? await finishSyncRun(this.#db, tenantId, run.anchors)
        : await deleteSyncedUsersByAnchor(this.#db, tenantId, run.deletedAnchors);
    await this.#revoke(tenantId, run, fin.deletedIds, 'deleted');
    return fin;
  }

  /** Ends the sessions and grants of users disabled or deleted on premises, one audit entry each. */
  async #revoke(tenantId: string, run: Run, userIds: string[], reason: 'disabled' | 'deleted') {
    for (const userId of userIds) {
      const rows = await revokeGrantsOfUser(this.#db, tenantId, userId);
      await audit(
        this.#db,
        {
          tenantId,
          actor: 'sync',
          action: 'user.grants_revoked',
          target: userId,
          detail: { reason, runId: run.runId, rows },
        },
        this.#now(),
      );
    }
    if (userIds.length > 0)
      this.#log.info({ runId: run.runId, users: userIds.length, reason }, 'sync revoked grants');
  }

  /** One page: its groups, then its users, then those users' memberships; progress recorded. */
  async #apply(tenantId: string, run: Run, page: SyncPage): Promise<void> {
    const now = this.#now();
    const c = run.counts;
    const groups = page.groups ?? [];
    if (groups.length > 0) {
      const g = await upsertSyncedGroups(this.#db, tenantId, groups, now);
      c.groupsAdded += g.created;
      c.groupsUpdated += g.updated;
      for (const x of groups) run.groupAnchors.add(x.anchor);
      c.groupsSeen = run.groupAnchors.size;
    }
    const s = await upsertSyncedUsers(this.#db, tenantId, page.users, now);
    const m = await applyMemberships(this.#db, tenantId, page.users);
    c.usersAdded += s.created;
    c.usersUpdated += s.updated;
    c.skipped += s.skipped;
    c.membershipsChanged += m.changedUsers;
    for (const u of page.users) run.anchors.add(u.anchor);
    for (const a of page.deletedUsers ?? []) run.deletedAnchors.add(a);
    for (const g of page.groupMembers ?? []) {
      const set = run.groupMembers.get(g.group) ?? new Set<string>();
      for (const u of g.users) set.add(u);
      run.groupMembers.set(g.group, set);
      run.memberAnchors += g.users.length;
    }
    await this.#revoke(tenantId, run, s.disabledIds, 'disabled');
    c.usersSeen = run.anchors.size;
    run.nextSeq++;
    if (s.skipped > 0)
      this.#log.warn({ runId: run.runId, skippedUpns: s.skippedUpns.slice(0, 20) }, 'sync skipped users');
    await updateSyncRun(this.#db, tenantId, run.runId, { pages: run.nextSeq, counts: c }, now);
  }
}
