/**
 * Directory sync ingestion: an agent streams a full run as pages; each page is applied at once
 * (one transaction), anchors are collected, and the final page applies deletions behind the
 * accidental-deletion guard. Each page is acknowledged so the agent can pace itself.
 * The agent may hang up at any await: conn.send is then a no-op, so nothing here throws for it.
 */
import type { SyncPage } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { Db } from '../db/index.ts';
import { audit } from '../directory/audit.ts';
import { finishSyncRun, upsertSyncedUsers } from '../directory/users.ts';
import type { AgentConnection } from './connection.ts';

/** A run this large is a runaway agent, not a directory (the cloud would hold every anchor). */
export const MAX_ANCHORS_PER_RUN = 2_000_000;

interface Run {
  runId: string;
  nextSeq: number;
  anchors: Set<string>;
  created: number;
  updated: number;
  skipped: number;
}

export interface SyncSummary {
  created: number;
  updated: number;
  deleted: number;
  skipped: number;
  deletionGuarded: boolean;
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

  async onPage(conn: AgentConnection, page: SyncPage): Promise<void> {
    let run = this.#runs.get(conn);
    if (page.seq === 0) {
      if (run) this.#log.warn({ agentId: conn.agentId, runId: run.runId }, 'sync run abandoned by a new one');
      run = { runId: page.runId, nextSeq: 0, anchors: new Set(), created: 0, updated: 0, skipped: 0 };
      this.#runs.set(conn, run);
    }
    if (!run || run.runId !== page.runId || run.nextSeq !== page.seq) {
      this.#runs.delete(conn);
      conn.sendError(
        'protocol_error',
        `sync page ${page.runId}/${page.seq} is out of order; start the run again`,
      );
      return;
    }
    if (run.anchors.size + page.users.length > MAX_ANCHORS_PER_RUN) {
      this.#runs.delete(conn);
      conn.sendError('protocol_error', 'the sync run is too large');
      return;
    }
    const s = await upsertSyncedUsers(this.#db, conn.tenantId, page.users, this.#now());
    run.created += s.created;
    run.updated += s.updated;
    run.skipped += s.skipped;
    for (const u of page.users) run.anchors.add(u.anchor);
    run.nextSeq++;
    if (s.skipped > 0)
      this.#log.warn({ runId: run.runId, skippedUpns: s.skippedUpns.slice(0, 20) }, 'sync skipped users');
    if (!page.final) {
      conn.send({ type: 'sync.ack', runId: run.runId, seq: page.seq });
      return;
    }
    this.#runs.delete(conn);
    const fin = await finishSyncRun(this.#db, conn.tenantId, run.anchors);
    const summary: SyncSummary = {
      created: run.created,
      updated: run.updated,
      deleted: fin.deleted,
      skipped: run.skipped,
      deletionGuarded: fin.deletionGuarded,
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
    this.#log.info({ agentId: conn.agentId, runId: run.runId, ...summary }, 'sync run applied');
    if (fin.deletionGuarded)
      this.#log.warn({ tenantId: conn.tenantId, runId: run.runId }, 'sync deletions refused by the guard');
    try {
      this.#onFinished?.(conn.tenantId, summary);
    } catch (err) {
      // A listener's bug is not the agent's: the run was applied, so it is still acknowledged.
      this.#log.error({ err, runId: run.runId }, 'sync listener failed');
    }
    conn.send({ type: 'sync.ack', runId: run.runId, seq: page.seq, summary });
  }
}
