/**
 * One sync run at a time over the current connection: read the directory (all of it, or what
 * changed since the mark: delta.ts), check the deletion guard, send the pages one by one, each
 * after the previous page's sync.ack, then keep the new mark.
 */
import { randomUUID } from 'node:crypto';
import { type GroupMembers, MAX_FRAME_BYTES, type SyncPage } from '@gatehouse/protocol';
import { collectDelta, readMark, readPosition, type SyncMark, writeMark } from '../delta.ts';
import { startHeapRelief } from '../heap.ts';
import { chunk, collectUsers, deletionGuard, readLastSync, writeLastSyncCount } from '../sync.ts';
import type { AgentRuntime } from './runtime.ts';

const ACK_TIMEOUT_MS = 60_000;

type Summary = { created?: number; deleted?: number } | undefined;
type Pages = Pick<SyncPage, 'users' | 'groups' | 'deletedUsers' | 'groupMembers'>[];
type Mode = SyncPage['mode'];

interface Read {
  mode: Mode;
  users: number;
  groups: number | undefined;
  skipped: number;
  server: string;
  pages: Pages;
  /** The mark to keep once the cloud applied every page. */
  next: SyncMark | undefined;
}

export class SyncRunner {
  readonly #rt: AgentRuntime;
  readonly #acks = new Map<string, (summary: Summary) => void>();
  #running = false;
  /** Kept across connections: a flapping connection must not mean a full sync per reconnect. */
  lastSyncAt = 0;

  constructor(rt: AgentRuntime) {
    this.#rt = rt;
  }

  get due(): boolean {
    return Date.now() - this.lastSyncAt >= this.#rt.config.sync.intervalMinutes * 60_000;
  }

  /** The delta schedule's timer (none when sync.deltaIntervalMinutes is 0). */
  deltaTimer(tick: () => void): ReturnType<typeof setInterval>[] {
    const minutes = this.#rt.config.sync.deltaIntervalMinutes;
    return minutes > 0 ? [setInterval(tick, minutes * 60_000)] : [];
  }

  /** A sync.ack from the cloud. */
  acked(runId: string, seq: number, summary: Summary): void {
    this.#acks.get(`${runId}/${seq}`)?.(summary);
  }

  /**
   * Runs a sync unless one is running; `send` is false once the connection is gone. A delta run
   * is full instead when a full one is due or the mark cannot be used.
   */
  async run(
    reason: string,
    send: (m: SyncPage) => boolean,
    requestedRunId?: string,
    wanted: Mode = 'full',
  ): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const runId = requestedRunId ?? randomUUID();
    const { log, config } = this.#rt;
    const heap = startHeapRelief();
    try {
      const read =
        (wanted === 'delta' && !this.due ? await this.#readDelta() : undefined) ?? (await this.#read());
      if (!read) return;
      const { mode, users, groups, skipped, server, pages } = read;
      // Nothing changed: no run to record every few minutes, only the mark moves on. A run someone
      // asked for is sent all the same, so its record answers them.
      const empty = users === 0 && !pages.some((p) => p.deletedUsers?.length || p.groups?.length);
      if (mode === 'delta' && empty && !requestedRunId) {
        if (read.next) writeMark(config.stateDir, read.next);
        return;
      }
      let summary: Summary;
      for (const [seq, page] of pages.entries()) {
        const acked = this.#awaitAck(runId, seq);
        send({
          type: 'sync.page',
          runId,
          mode,
          seq,
          total: pages.length,
          ...(seq === 0 ? { server, intervalMinutes: config.sync.intervalMinutes } : {}),
          ...(groups ? { withGroups: true } : {}),
          ...page,
          final: seq === pages.length - 1,
        });
        summary = await acked;
      }
      if (mode === 'full') {
        writeLastSyncCount(config.stateDir, users, groups);
        this.lastSyncAt = Date.now();
      } else {
        // The guard's base follows the directory: what the cloud added and deleted this run.
        const prev = readLastSync(config.stateDir);
        const count = (prev.count ?? 0) + (summary?.created ?? 0) - (summary?.deleted ?? 0);
        writeLastSyncCount(config.stateDir, Math.max(0, count), prev.groups);
      }
      if (read.next) writeMark(config.stateDir, read.next);
      log.info(
        { reason, runId, mode, users, groups, skipped, pages: pages.length, summary, gc: heap.collections },
        'sync done',
      );
    } catch (err) {
      log.warn({ err: (err as Error).message, runId }, 'sync failed');
    } finally {
      heap.stop();
      for (const k of this.#acks.keys()) if (k.startsWith(`${runId}/`)) this.#acks.delete(k);
      this.#running = false;
    }
  }

  #awaitAck(runId: string, seq: number): Promise<Summary> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no sync.ack for page ${seq}`)), ACK_TIMEOUT_MS);
      this.#acks.set(`${runId}/${seq}`, (s) => {
        clearTimeout(t);
        resolve(s);
      });
    });
  }

  /**
   * What changed since the mark, in pages; undefined when the run must be full (logged), null
   * when the deletion guard refuses it.
   */
  async #readDelta(): Promise<Read | null | undefined> {
    const { log, config, directory } = this.#rt;
    const prev = readLastSync(config.stateDir).count;
    const d = await collectDelta(
      directory,
      config.sync.pageSize,
      readMark(config.stateDir),
      Date.now(),
      prev,
    );
    if (d.full !== undefined) {
      log.info({ why: d.full }, 'delta sync not possible; running a full sync');
      return undefined;
    }
    if (prev && d.deleted.length > config.sync.deletionThreshold * prev) {
      log.error(
        { previous: prev, deleted: d.deleted.length },
        'sync refused: more users would be deleted than sync.deletionThreshold allows',
      );
      return null;
    }
    const size = Math.min(config.sync.pageSize, 500);
    // A group's member list is cut into parts of at most 1,000 anchors; the cloud joins them.
    const members: GroupMembers[] = [];
    for (const [group, list] of d.groupMembers) {
      for (let i = 0; i === 0 || i < list.length; i += 1000)
        members.push({ group, users: list.slice(i, i + 1000) });
    }
    const pages: Pages = [
      ...(d.groups.length ? chunk(d.groups, size, MAX_FRAME_BYTES - 1024) : []).map((g) => ({
        groups: g,
        users: [],
      })),
      ...chunk(d.users, size, MAX_FRAME_BYTES - 1024).map((u) => ({ users: u })),
      ...(members.length ? chunk(members, 500, MAX_FRAME_BYTES - 1024) : []).map((g) => ({
        users: [],
        groupMembers: g,
      })),
      ...(d.deleted.length ? chunk(d.deleted, 5000, MAX_FRAME_BYTES - 1024) : []).map((a) => ({
        users: [],
        deletedUsers: a,
      })),
    ];
    return {
      mode: 'delta',
      users: d.users.length,
      groups: directory.cfg.syncGroups ? d.groups.length : undefined,
      skipped: d.skipped,
      server: d.server,
      pages,
      next: d.next,
    };
  }

  /** The directory's users and groups in pages, or null when the deletion guard refuses the run. */
  async #read(): Promise<Read | null> {
    const { log, config, directory } = this.#rt;
    let position: { identity: string; mark: string | undefined } | undefined;
    const { users, skipped, groups, server, truncatedMemberships } = await collectUsers(
      directory,
      config.sync.pageSize,
      // A mark that cannot be read only means the next run is full too.
      async (client, srv) => {
        position = await readPosition(client, directory.cfg, srv).catch(() => undefined);
      },
    );
    const prev = readLastSync(config.stateDir);
    for (const [what, before, now] of [
      ['users', prev.count, users.length],
      ['groups', prev.groups, groups?.length],
    ] as const) {
      if (now === undefined) continue;
      const guard = deletionGuard(before, now, config.sync.deletionThreshold);
      if (!guard.ok) {
        log.error(
          { what, previous: before, now, removedFraction: guard.removedFraction },
          `sync refused: more ${what} would be deleted than sync.deletionThreshold allows`,
        );
        return null;
      }
    }
    if (truncatedMemberships)
      log.warn({ users: truncatedMemberships }, 'users in more groups than a sync page carries; lists cut');
    // Room is left for the page's own fields. Groups go first: the users' pages name them.
    const size = Math.min(config.sync.pageSize, 500);
    const pages: Pages = [
      ...(groups?.length ? chunk(groups, size, MAX_FRAME_BYTES - 1024) : []).map((g) => ({
        groups: g,
        users: [],
      })),
      ...chunk(users, size, MAX_FRAME_BYTES - 1024).map((u) => ({ users: u })),
    ];
    const now = Date.now();
    const next = position?.mark
      ? { kind: directory.cfg.kind, identity: position.identity, mark: position.mark, fullAt: now, at: now }
      : undefined;
    return { mode: 'full', users: users.length, groups: groups?.length, skipped, server, pages, next };
  }
}
