/**
 * Smart lockout, consulted before anything is sent on premises.
 *
 * - Counters are kept per user and per location class: a sign-in from a network or browser where the
 *   user has succeeded before is "familiar", so an attacker elsewhere cannot lock the user out of it.
 * - A wrong password repeated within a short window is answered without a bind and not counted
 *   again: the cloud keeps a keyed hash of recent wrong passwords (never the password).
 * - Exact under concurrency: before a request is dispatched it counts itself in flight on the
 *   counter row; failures plus attempts in flight may never exceed the threshold, so N concurrent
 *   wrong passwords cost the directory exactly `threshold` binds. Counters live in the database, so
 *   every cloud node sees them. A node that dies leaves its count behind; it lapses once the latest
 *   deadline of the attempts counted (plus a margin) has passed.
 * - The hot path is short: admitting is one transaction of three statements (where the user has
 *   signed in before, the counter row, counting in); a success is one statement more.
 * - Past the threshold, every further failure locks again, for twice as long each time (capped).
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SignInOutcome } from '@gatehouse/protocol';
import { type Kysely, PostgresAdapter, sql } from 'kysely';
import type { Database } from '../db/index.ts';
import type { SecretBox } from '../secrets.ts';
import {
  type Admission,
  type CounterRow,
  directoryBlock,
  IN_FLIGHT_SLACK_MS,
  inFlightNow,
  type LocationClass,
  type LockoutSettings,
  lapsed,
  lockDurationMs,
  networkOf,
  type Origin,
  REPEAT_WINDOW_MS,
  type Reservation,
  type SettleResult,
  UNKNOWN_PREFIX,
} from './rules.ts';
import { pruneLockout } from './sweep.ts';

export type {
  Admission,
  LocationClass,
  LockoutSettings,
  Origin,
  Reservation,
  SettleResult,
} from './rules.ts';
export { lockDurationMs, networkOf } from './rules.ts';

/** A familiar location's last success is refreshed at most this often (a write per sign-in otherwise). */
const FAMILIAR_REFRESH_MS = 86_400_000;
/** How often one process sweeps lapsed rows of unknown names and expired wrong-password hashes. */
const PRUNE_EVERY_MS = 60_000;
/** Counter rows of unknown names kept per tenant; beyond it the least recently touched go first. */
const MAX_UNKNOWN_NAMES = 100_000;

type Busy = { kind: 'busy'; location: LocationClass };

/** How often an attempt waiting for a free slot looks again. */
const BUSY_WAIT_MS = 10;

export interface SmartLockoutOptions {
  /** Counter rows of unknown names kept per tenant (default 100,000). */
  maxUnknownNames?: number;
  /** Told when a background sweep fails (it is retried at the next one). */
  onError?: (err: unknown) => void;
}

export interface SmartLockout {
  admit(
    tenantId: string,
    userId: string,
    password: string,
    origin: Origin,
    settings: LockoutSettings,
    deadline: number,
  ): Promise<Admission>;
  settle(reservation: Reservation, outcome: SignInOutcome, settings: LockoutSettings): Promise<SettleResult>;
  unlock(tenantId: string, userId: string): Promise<void>;
  /** The subject that stands for a name no user has: a keyed hash of it, never the name. */
  unknownSubject(tenantId: string, login: string): string;
  /** Deletes lapsed rows of unknown names, the oldest beyond the per-tenant cap, and expired
   * wrong-password hashes. Runs by itself once a minute; exposed for tests and the bench. */
  prune(): Promise<void>;
  status(
    tenantId: string,
    userId: string,
  ): Promise<Array<{ location: LocationClass; failures: number; lockedUntil: number; lockCount: number }>>;
}

const emptyCounter = (tenantId: string, userId: string, location: LocationClass) => ({
  tenant_id: tenantId,
  user_id: userId,
  location,
  failures: 0,
  lock_count: 0,
  locked_until: 0,
  in_flight: 0,
  in_flight_until: 0,
});

export const createSmartLockout = (
  db: Kysely<Database>,
  secrets: SecretBox,
  now: () => number,
  options: SmartLockoutOptions = {},
): SmartLockout => {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  const maxUnknown = options.maxUnknownNames ?? MAX_UNKNOWN_NAMES;
  const keysOf = (tenantId: string, userId: string, origin: Origin): string[] => {
    const keys: string[] = [];
    if (origin.ip)
      keys.push(secrets.mac(`${tenantId}/${userId}/net/${networkOf(origin.ip)}`, 'familiar-location'));
    if (origin.deviceId)
      keys.push(secrets.mac(`${tenantId}/${userId}/dev/${origin.deviceId}`, 'familiar-location'));
    return keys;
  };
  /** Counts an attempt out again (never below zero). */
  const countOut = sql<number>`case when in_flight > 0 then in_flight - 1 else 0 end`;

  /** One admission attempt; 'busy' when every slot below the threshold is held by attempts in flight. */
  const tryAdmit = async (
    tenantId: string,
    userId: string,
    keys: string[],
    passwordMac: string,
    settings: LockoutSettings,
    deadline: number,
  ): Promise<Admission | Busy> => {
    const t = now();
    return db.transaction().execute(async (tx): Promise<Admission | Busy> => {
      const seen =
        keys.length === 0
          ? []
          : await tx
              .selectFrom('familiar_locations')
              .select(['key_hash', 'last_success_at'])
              .where('tenant_id', '=', tenantId)
              .where('user_id', '=', userId)
              .where('key_hash', 'in', keys)
              .execute();
      const location: LocationClass = seen.length > 0 ? 'familiar' : 'unfamiliar';
      // Lock the counter row (PostgreSQL) so concurrent admissions on any node are serialised;
      // SQLite serialises whole transactions already.
      if (postgres) {
        await tx
          .insertInto('lockout_counters')
          .values({ ...emptyCounter(tenantId, userId, location), updated_at: t })
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      let q = tx
        .selectFrom('lockout_counters')
        .select([
          'location',
          'failures',
          'locked_until',
          'lock_count',
          'in_flight',
          'in_flight_until',
          'updated_at',
        ])
        .where('tenant_id', '=', tenantId)
        .where('user_id', '=', userId);
      if (postgres) q = q.forUpdate();
      const rows: CounterRow[] = await q.execute();
      const found = rows.find((r) => r.location === location);
      // A lapsed counter is read, and rewritten below, as an empty one.
      const stale = found !== undefined && lapsed(found, t);
      const counter = stale ? undefined : found;
      if (counter && counter.locked_until > t)
        return { kind: 'locked', location, until: counter.locked_until };
      const directory = directoryBlock(rows, settings, t);
      if (directory?.kind === 'locked') return { kind: 'locked', location, until: directory.until };
      if (directory?.kind === 'busy') return { kind: 'busy', location };
      const failures = counter?.failures ?? 0;
      // Wrong passwords are only remembered along with a failure, so with none there is nothing to look up.
      if (failures > 0) {
        const repeat = await tx
          .selectFrom('lockout_bad_passwords')
          .select('hash')
          .where('tenant_id', '=', tenantId)
          .where('user_id', '=', userId)
          .where('hash', '=', passwordMac)
          .where('expires_at', '>', t)
          .executeTakeFirst();
        if (repeat) return { kind: 'repeat', location };
      }
      // Already past the threshold (a lock expired): one attempt at a time, each failure re-locks.
      const room = failures >= settings.threshold ? 1 : settings.threshold - failures;
      const inFlight = counter ? inFlightNow(counter, t) : 0;
      if (inFlight >= room) return { kind: 'busy', location };
      const until = Math.max(
        counter && counter.in_flight_until > t ? counter.in_flight_until : 0,
        deadline + IN_FLIGHT_SLACK_MS,
      );
      await tx
        .insertInto('lockout_counters')
        .values({
          ...emptyCounter(tenantId, userId, location),
          in_flight: 1,
          in_flight_until: until,
          updated_at: t,
        })
        .onConflict((oc) =>
          oc.columns(['tenant_id', 'user_id', 'location']).doUpdateSet({
            in_flight: inFlight + 1,
            in_flight_until: until,
            updated_at: t,
            ...(stale ? { failures: 0, lock_count: 0, locked_until: 0 } : {}),
          }),
        )
        .execute();
      const fresh = new Set(
        seen.filter((r) => t - r.last_success_at < FAMILIAR_REFRESH_MS).map((r) => r.key_hash),
      );
      return {
        kind: 'admit',
        reservation: {
          tenantId,
          userId,
          location,
          passwordMac,
          newKeys: keys.filter((k) => !fresh.has(k)),
          hadFailures: rows.some((r) => r.failures > 0 || r.lock_count > 0),
        },
      };
    });
  };

  const recordFamiliar = async (r: Reservation, t: number) => {
    for (const key of r.newKeys) {
      await db
        .insertInto('familiar_locations')
        .values({ tenant_id: r.tenantId, user_id: r.userId, key_hash: key, last_success_at: t })
        .onConflict((oc) =>
          oc.columns(['tenant_id', 'user_id', 'key_hash']).doUpdateSet({ last_success_at: t }),
        )
        .execute();
    }
  };

  const prune = () => pruneLockout(db, now(), maxUnknown);
  let lastSweep = now();
  let sweeping = false;
  // Off the sign-in's path: the attempt that triggers it does not wait for it.
  const sweepSoon = () => {
    if (sweeping || now() - lastSweep < PRUNE_EVERY_MS) return;
    sweeping = true;
    lastSweep = now();
    prune()
      .catch((err: unknown) => options.onError?.(err))
      .finally(() => {
        sweeping = false;
      });
  };

  return {
    unknownSubject: (tenantId, login) =>
      UNKNOWN_PREFIX + secrets.mac(`${tenantId}/${login}`, 'lockout-unknown-name'),
    prune,

    async admit(tenantId, userId, password, origin, settings, deadline) {
      sweepSoon();
      const keys = keysOf(tenantId, userId, origin);
      const passwordMac = secrets.mac(`${tenantId}/${userId}/${password}`, 'lockout-bad-password');
      // Bounded by real time as well as the request's deadline, whatever clock `now` is.
      const giveUp = performance.now() + Math.max(0, deadline - now());
      for (;;) {
        const r = await tryAdmit(tenantId, userId, keys, passwordMac, settings, deadline);
        if (r.kind !== 'busy') return r;
        // The slots left below the threshold are held by attempts still in flight: wait for one to
        // settle rather than refuse a user who may well have the right password.
        if (performance.now() + BUSY_WAIT_MS >= giveUp)
          return { kind: 'locked', location: r.location, until: deadline };
        await sleep(BUSY_WAIT_MS / 2 + Math.random() * BUSY_WAIT_MS);
      }
    },

    async settle(r, outcome, settings) {
      const t = now();
      if (outcome === 'success') {
        // One statement: count out, and (only if there were any) reset every failure of the user.
        await db
          .updateTable('lockout_counters')
          .set(
            r.hadFailures
              ? (eb) => ({
                  failures: 0,
                  lock_count: 0,
                  locked_until: 0,
                  updated_at: t,
                  in_flight: eb
                    .case()
                    .when('location', '=', r.location)
                    .then(countOut)
                    .else(eb.ref('in_flight'))
                    .end(),
                })
              : { in_flight: countOut, updated_at: t },
          )
          .where('tenant_id', '=', r.tenantId)
          .where('user_id', '=', r.userId)
          .$if(!r.hadFailures, (q) => q.where('location', '=', r.location))
          .execute();
        if (r.hadFailures)
          await db
            .deleteFrom('lockout_bad_passwords')
            .where('tenant_id', '=', r.tenantId)
            .where('user_id', '=', r.userId)
            .execute();
        await recordFamiliar(r, t);
        return { locked: false };
      }
      if (outcome !== 'invalid_credentials') {
        await db
          .updateTable('lockout_counters')
          .set({ in_flight: countOut })
          .where('tenant_id', '=', r.tenantId)
          .where('user_id', '=', r.userId)
          .where('location', '=', r.location)
          .execute();
        return { locked: false };
      }
      return db.transaction().execute(async (tx) => {
        await tx
          .insertInto('lockout_bad_passwords')
          .values({
            tenant_id: r.tenantId,
            user_id: r.userId,
            hash: r.passwordMac,
            expires_at: t + REPEAT_WINDOW_MS,
          })
          .onConflict((oc) =>
            oc.columns(['tenant_id', 'user_id', 'hash']).doUpdateSet({ expires_at: t + REPEAT_WINDOW_MS }),
          )
          .execute();
        const row = await tx
          .updateTable('lockout_counters')
          .set((eb) => ({ failures: eb('failures', '+', 1), in_flight: countOut, updated_at: t }))
          .where('tenant_id', '=', r.tenantId)
          .where('user_id', '=', r.userId)
          .where('location', '=', r.location)
          .returning(['failures', 'lock_count'])
          .executeTakeFirstOrThrow();
        if (row.failures < settings.threshold) return { locked: false };
        const until = t + lockDurationMs(settings, row.lock_count);
        await tx
          .updateTable('lockout_counters')
          .set({ locked_until: until, lock_count: row.lock_count + 1 })
          .where('tenant_id', '=', r.tenantId)
          .where('user_id', '=', r.userId)
          .where('location', '=', r.location)
          .execute();
        return { locked: true, until };
      });
    },

    async unlock(tenantId, userId) {
      await db.transaction().execute(async (tx) => {
        await tx
          .updateTable('lockout_counters')
          .set({ failures: 0, lock_count: 0, locked_until: 0, updated_at: now() })
          .where('tenant_id', '=', tenantId)
          .where('user_id', '=', userId)
          .execute();
        await tx
          .deleteFrom('lockout_bad_passwords')
          .where('tenant_id', '=', tenantId)
          .where('user_id', '=', userId)
          .execute();
      });
    },

    async status(tenantId, userId) {
      const rows = await db
        .selectFrom('lockout_counters')
        .select(['location', 'failures', 'locked_until', 'lock_count'])
        .where('tenant_id', '=', tenantId)
        .where('user_id', '=', userId)
        .execute();
      return rows.map((r) => ({
        location: r.location as LocationClass,
        failures: r.failures,
        lockedUntil: r.locked_until,
        lockCount: r.lock_count,
      }));
    },
  };
};
