/**
 * One full sync run at a time over the current connection: read the directory, check the
 * deletion guard, send the pages one by one, each after the previous page's sync.ack.
 */
import { randomUUID } from 'node:crypto';
import { MAX_FRAME_BYTES, type SyncPage } from '@gatehouse/protocol';
import { chunk, collectUsers, deletionGuard, readLastSync, writeLastSyncCount } from '../sync.ts';
import type { AgentRuntime } from './runtime.ts';

const ACK_TIMEOUT_MS = 60_000;

type Summary = unknown;
type Pages = Pick<SyncPage, 'users' | 'groups'>[];

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

  /** A sync.ack from the cloud. */
  acked(runId: string, seq: number, summary: Summary): void {
    this.#acks.get(`${runId}/${seq}`)?.(summary);
  }

  /** Runs a sync unless one is running; `send` is false once the connection is gone. */
  async run(reason: string, send: (m: SyncPage) => boolean, requestedRunId?: string): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const runId = requestedRunId ?? randomUUID();
    const { log, config } = this.#rt;
    try {
      const read = await this.#read();
      if (!read) return;
      const { users, groups, skipped, server, pages } = read;
      let summary: Summary;
      for (const [seq, page] of pages.entries()) {
        const acked = this.#awaitAck(runId, seq);
        send({
          type: 'sync.page',
          runId,
          mode: 'full',
          seq,
          total: pages.length,
          ...(seq === 0 ? { server } : {}),
          ...(groups ? { withGroups: true } : {}),
          ...page,
          final: seq === pages.length - 1,
        });
        summary = await acked;
      }
      writeLastSyncCount(config.stateDir, users.length, groups?.length);
      this.lastSyncAt = Date.now();
      log.info(
        { reason, runId, users: users.length, groups: groups?.length, skipped, pages: pages.length, summary },
        'sync done',
      );
    } catch (err) {
      log.warn({ err: (err as Error).message, runId }, 'sync failed');
    } finally {
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

  /** The directory's users and groups in pages, or null when the deletion guard refuses the run. */
  async #read() {
    const { log, config, directory } = this.#rt;
    const { users, skipped, groups, server, truncatedMemberships } = await collectUsers(
      directory,
      config.sync.pageSize,
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
    return { users, groups, skipped, server, pages };
  }
}
