/**
 * Retention of the sign-in log and the audit log: rows older than the configured days are
 * deleted in the background, in small batches with a pause between them, so SQLite's single
 * writer and PostgreSQL's row locks are held for a few milliseconds at a time and sign-ins (whose
 * log rows must commit before their answer) never wait behind a long delete.
 *
 * In the scale-out shape every node runs the same sweep; two nodes deleting the same old rows do
 * no harm (the second finds fewer), so there is no leader to elect.
 */
import type { Logger } from 'pino';
import type { Db } from './db/index.ts';
import { pruneAudit } from './store/audit.ts';
import { pruneSignIns } from './store/sign-ins.ts';
import { listTenants } from './store/tenants.ts';

const DAY_MS = 86_400_000;

export interface RetentionOptions {
  /** 0: keep forever. */
  signInDays: number;
  auditDays: number;
  everyMs: number;
  /** Rows per DELETE. */
  batch?: number;
  /** Pause between two DELETEs (the event loop and the writer are the sign-ins' in between). */
  pauseMs?: number;
}

export interface Retention {
  /** One sweep of every tenant now (the next one stays on schedule). Counts deleted rows. */
  sweep(): Promise<{ signIns: number; audit: number }>;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export const startRetention = (
  deps: { db: Db; now: () => number; log?: Pick<Logger, 'info' | 'warn'> },
  o: RetentionOptions,
): Retention => {
  const batch = o.batch ?? 500;
  const pauseMs = o.pauseMs ?? 20;
  let closed = false;
  let running: Promise<{ signIns: number; audit: number }> | undefined;

  const drain = async (
    prune: (db: Db, tenantId: string, before: number, batch: number) => Promise<number>,
    tenantId: string,
    before: number,
  ) => {
    let total = 0;
    while (!closed) {
      const n = await prune(deps.db, tenantId, before, batch);
      total += n;
      if (n < batch) break;
      await sleep(pauseMs);
    }
    return total;
  };

  const once = async () => {
    const t = deps.now();
    const out = { signIns: 0, audit: 0 };
    for (const tenant of await listTenants(deps.db)) {
      if (o.signInDays > 0) out.signIns += await drain(pruneSignIns, tenant.id, t - o.signInDays * DAY_MS);
      if (o.auditDays > 0) out.audit += await drain(pruneAudit, tenant.id, t - o.auditDays * DAY_MS);
    }
    if (out.signIns + out.audit > 0) deps.log?.info(out, 'retention: old sign-in and audit rows deleted');
    return out;
  };

  const sweep = () => {
    // One sweep at a time: a slow one is joined, not doubled.
    running ??= once().finally(() => {
      running = undefined;
    });
    return running;
  };

  let timer: NodeJS.Timeout | undefined;
  // The first sweep soon after start (a cloud restarted more often than everyMs still prunes).
  const schedule = (ms: number) => {
    timer = setTimeout(() => {
      sweep()
        .catch((err: unknown) => deps.log?.warn({ err }, 'retention sweep failed; retried at the next one'))
        .finally(() => !closed && schedule(o.everyMs));
    }, ms);
    timer.unref();
  };
  if (o.signInDays > 0 || o.auditDays > 0) schedule(Math.min(o.everyMs, 60_000));

  return {
    sweep,
    async close() {
      closed = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
};
