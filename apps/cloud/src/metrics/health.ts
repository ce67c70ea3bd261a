/**
 * Liveness and readiness, for load balancers and supervisors (docs/operations.md, "Health
 * checks"). /livez says the process answers; /readyz says this node should get traffic: the
 * database answers, its schema is the one this version expects, NATS is connected in the
 * scale-out shape, and the node is not draining after SIGTERM.
 *
 * Probes from several balancers at once share one check. A check's failure is logged when the
 * answer changes, not at every probe.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { type Db, pingDb } from '../db/index.ts';
import { pendingMigrations } from '../db/migrations.ts';
import { ready as readyGauge } from './families.ts';
import { within } from './sources.ts';

/** A database that takes longer than this to answer `select 1` is as good as down to a balancer. */
export const CHECK_TIMEOUT_MS = 2_000;

export interface Readiness {
  status: 'ok' | 'unavailable' | 'draining';
  checks: {
    database: 'ok' | 'unreachable';
    migrations: 'ok' | 'behind' | 'unknown';
    nats?: 'ok' | 'disconnected';
    draining: boolean;
  };
}

export interface Health {
  readiness(): Promise<Readiness>;
  /** From now on /readyz answers 503 draining (the first step of a stop). */
  drain(): void;
  readonly draining: boolean;
}

export const createHealth = (o: { db: Db; log: Logger; nats?: () => boolean }): Health => {
  let draining = false;
  let inFlight: Promise<Readiness> | undefined;
  let last: Readiness['status'] = 'ok';

  const check = async (): Promise<Readiness> => {
    const checks: Readiness['checks'] = { database: 'ok', migrations: 'ok', draining };
    try {
      await within(pingDb(o.db), CHECK_TIMEOUT_MS);
      try {
        const pending = await within(pendingMigrations(o.db as Kysely<unknown>), CHECK_TIMEOUT_MS);
        if (pending.length > 0) checks.migrations = 'behind';
      } catch {
        checks.migrations = 'unknown';
      }
    } catch (err) {
      checks.database = 'unreachable';
      checks.migrations = 'unknown';
      if (last !== 'unavailable') o.log.error({ err }, 'readiness: the database does not answer');
    }
    if (o.nats) checks.nats = o.nats() ? 'ok' : 'disconnected';
    const healthy = checks.database === 'ok' && checks.migrations === 'ok' && checks.nats !== 'disconnected';
    const status = draining ? 'draining' : healthy ? 'ok' : 'unavailable';
    if (status !== last) o.log.warn({ from: last, to: status, checks }, 'readiness changed');
    last = status;
    readyGauge.set(status === 'ok' ? 1 : 0);
    return { status, checks };
  };

  return {
    readiness() {
      inFlight ??= check().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    },
    drain() {
      draining = true;
      readyGauge.set(0);
    },
    get draining() {
      return draining;
    },
  };
};
