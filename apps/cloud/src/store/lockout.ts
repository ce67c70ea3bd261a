/**
 * Smart lockout's tables: lockout_counters, lockout_bad_passwords and familiar_locations. Every
 * function is one statement (or, for `lockoutTransaction`, the transaction lockout/ runs its
 * statements in), so lockout/smart-lockout.ts keeps its statement counts: admitting is three, a
 * success one more. The rules deciding what to write stay in lockout/.
 */
import { PostgresAdapter, sql } from 'kysely';
import type { Db } from '../db/index.ts';
import { prepare } from '../db/prepared.ts';

export type LockoutLocation = 'familiar' | 'unfamiliar';

/** One counter of a user, as admission reads it. */
export interface CounterState {
  location: string;
  failures: number;
  locked_until: number;
  lock_count: number;
  in_flight: number;
  in_flight_until: number;
  in_flight_by: string;
  updated_at: number;
}

/** The counter a statement acts on. */
export interface CounterKey {
  tenantId: string;
  userId: string;
  location: LockoutLocation;
}

/** Counts an attempt out again (never below zero). */
const countOut = sql<number>`case when in_flight > 0 then in_flight - 1 else 0 end`;
/** Subjects of names no user has: their ids start with `prefix` (lockout/rules.ts). */
const unknownLike = (prefix: string) => sql<boolean>`user_id like ${`${prefix}%`}`;

const emptyCounter = (k: CounterKey) => ({
  tenant_id: k.tenantId,
  user_id: k.userId,
  location: k.location,
  failures: 0,
  lock_count: 0,
  locked_until: 0,
  in_flight: 0,
  in_flight_until: 0,
  in_flight_by: '',
});

/** PostgreSQL locks counter rows explicitly; SQLite serialises whole transactions already. */
export const locksRows = (db: Db): boolean => db.getExecutor().adapter instanceof PostgresAdapter;

/** PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back whole. */
const RETRYABLE = new Set(['40P01', '40001']);
const TRANSACTION_ATTEMPTS = 3;

/**
 * Runs `fn` in a transaction, again (up to three times) when PostgreSQL chose it as a deadlock's
 * victim. Lockout locks a user's counter rows in index order, but the sign-in path's group commit
 * (db/group-commit.ts) settles several sign-ins in one transaction in the order they finished, so
 * two settlements of one user from two places can take that user's rows in the other order. The
 * loser was rolled back entirely, so running it again is exact.
 */
export const lockoutTransaction = async <T>(db: Db, fn: (tx: Db) => Promise<T>): Promise<T> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction().execute(fn);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (attempt >= TRANSACTION_ATTEMPTS || typeof code !== 'string' || !RETRYABLE.has(code)) throw err;
    }
  }
};

type Familiar = { key_hash: string; last_success_at: number };
const familiarOf = (n: 1 | 2) =>
  prepare((db: Db, p: { tenantId: string; userId: string; k0: string; k1: string }) =>
    db
      .selectFrom('familiar_locations')
      .select(['key_hash', 'last_success_at'])
      .where('tenant_id', '=', p.tenantId)
      .where('user_id', '=', p.userId)
      .where('key_hash', 'in', n === 1 ? [p.k0] : [p.k0, p.k1]),
  );
// A sign-in has a network, a device or both: one statement for each count.
const familiar1 = familiarOf(1);
const familiar2 = familiarOf(2);

/** Which of `keys` (one or two: a network, a device) the user has succeeded from, and when last. */
export const familiarKeys = async (
  db: Db,
  tenantId: string,
  userId: string,
  keys: string[],
): Promise<Familiar[]> => {
  if (keys.length === 0) return [];
  if (keys.length > 2) throw new Error('familiarKeys: at most a network and a device');
  const p = { tenantId, userId, k0: keys[0]!, k1: keys[1] ?? keys[0]! };
  return (await (keys.length === 1 ? familiar1 : familiar2)(db, p)).rows as Familiar[];
};

/** Makes sure the counter row exists, so `readCounters(..., forUpdate)` has a row to lock. */
export const ensureCounter = async (db: Db, k: CounterKey, t: number): Promise<void> => {
  await db
    .insertInto('lockout_counters')
    .values({ ...emptyCounter(k), updated_at: t })
    .onConflict((oc) => oc.doNothing())
    .execute();
};

const countersOf = (forUpdate: boolean) =>
  prepare((db: Db, p: { tenantId: string; userId: string }) =>
    db
      .selectFrom('lockout_counters')
      .select([
        'location',
        'failures',
        'locked_until',
        'lock_count',
        'in_flight',
        'in_flight_until',
        'in_flight_by',
        'updated_at',
      ])
      .where('tenant_id', '=', p.tenantId)
      .where('user_id', '=', p.userId)
      .$if(forUpdate, (q) => q.forUpdate()),
  );
const counters = countersOf(false);
const countersForUpdate = countersOf(true);

/** Every counter of the user (one per location class), locked for the transaction when asked. */
export const readCounters = async (
  db: Db,
  tenantId: string,
  userId: string,
  forUpdate: boolean,
): Promise<CounterState[]> =>
  (await (forUpdate ? countersForUpdate : counters)(db, { tenantId, userId })).rows as CounterState[];

const recentBadPassword = prepare(
  (db: Db, p: { tenantId: string; userId: string; hash: string; t: number }) =>
    db
      .selectFrom('lockout_bad_passwords')
      .select('hash')
      .where('tenant_id', '=', p.tenantId)
      .where('user_id', '=', p.userId)
      .where('hash', '=', p.hash)
      .where('expires_at', '>', p.t),
);

/** Whether this wrong password (its keyed hash) was tried within its window. */
export const isRecentBadPassword = async (
  db: Db,
  tenantId: string,
  userId: string,
  hash: string,
  t: number,
): Promise<boolean> => (await recentBadPassword(db, { tenantId, userId, hash, t })).rows.length > 0;

type CountIn = CounterKey & { inFlight: number; until: number; by: string; t: number };
const countInAs = (reset: boolean) =>
  prepare((db: Db, p: CountIn) =>
    db
      .insertInto('lockout_counters')
      .values({
        ...emptyCounter(p),
        in_flight: 1,
        in_flight_until: p.until,
        in_flight_by: p.by,
        updated_at: p.t,
      })
      .onConflict((oc) =>
        oc.columns(['tenant_id', 'user_id', 'location']).doUpdateSet({
          in_flight: p.inFlight,
          in_flight_until: p.until,
          in_flight_by: p.by,
          updated_at: p.t,
          ...(reset ? { failures: 0, lock_count: 0, locked_until: 0 } : {}),
        }),
      ),
  );
const countInKeep = countInAs(false);
const countInReset = countInAs(true);

/**
 * Counts an attempt in (upsert): the row's count and deadline become `inFlight` and `until`, and
 * `by` who holds them. `reset` rewrites a lapsed counter as an empty one.
 */
export const countIn = async (
  db: Db,
  k: CounterKey,
  c: { inFlight: number; until: number; by: string; t: number; reset: boolean },
): Promise<void> => {
  const p = { tenantId: k.tenantId, userId: k.userId, location: k.location, ...c };
  await (c.reset ? countInReset : countInKeep)(db, p);
};

const familiarUpsert = prepare((db: Db, p: { tenantId: string; userId: string; key: string; t: number }) =>
  db
    .insertInto('familiar_locations')
    .values({ tenant_id: p.tenantId, user_id: p.userId, key_hash: p.key, last_success_at: p.t })
    .onConflict((oc) =>
      oc.columns(['tenant_id', 'user_id', 'key_hash']).doUpdateSet({ last_success_at: p.t }),
    ),
);

export const recordFamiliarKey = async (
  db: Db,
  tenantId: string,
  userId: string,
  key: string,
  t: number,
): Promise<void> => {
  await familiarUpsert(db, { tenantId, userId, key, t });
};

const countOutSuccessAs = (resetAll: boolean) =>
  prepare((db: Db, p: CounterKey & { t: number }) =>
    db
      .updateTable('lockout_counters')
      .set(
        resetAll
          ? (eb) => ({
              failures: 0,
              lock_count: 0,
              locked_until: 0,
              updated_at: p.t,
              in_flight: eb
                .case()
                .when('location', '=', p.location)
                .then(countOut)
                .else(eb.ref('in_flight'))
                .end(),
            })
          : { in_flight: countOut, updated_at: p.t },
      )
      .where('tenant_id', '=', p.tenantId)
      .where('user_id', '=', p.userId)
      .$if(!resetAll, (q) => q.where('location', '=', p.location)),
  );
const countOutKeep = countOutSuccessAs(false);
const countOutReset = countOutSuccessAs(true);

/**
 * A success, one statement: counts the attempt out and, when `resetAll` (the user had failures),
 * clears every counter of the user; otherwise touches only the attempt's own counter.
 */
export const countOutSuccess = async (db: Db, k: CounterKey, resetAll: boolean, t: number): Promise<void> => {
  const p = { tenantId: k.tenantId, userId: k.userId, location: k.location, t };
  await (resetAll ? countOutReset : countOutKeep)(db, p);
};

const countOutOnlyQuery = prepare((db: Db, p: CounterKey) =>
  db
    .updateTable('lockout_counters')
    .set({ in_flight: countOut })
    .where('tenant_id', '=', p.tenantId)
    .where('user_id', '=', p.userId)
    .where('location', '=', p.location),
);

/** An attempt that ended neither in success nor in a wrong password: counted out, nothing else. */
export const countOutOnly = async (db: Db, k: CounterKey): Promise<void> => {
  await countOutOnlyQuery(db, { tenantId: k.tenantId, userId: k.userId, location: k.location });
};

export const rememberBadPassword = async (
  db: Db,
  tenantId: string,
  userId: string,
  hash: string,
  expiresAt: number,
): Promise<void> => {
  await db
    .insertInto('lockout_bad_passwords')
    .values({ tenant_id: tenantId, user_id: userId, hash, expires_at: expiresAt })
    .onConflict((oc) => oc.columns(['tenant_id', 'user_id', 'hash']).doUpdateSet({ expires_at: expiresAt }))
    .execute();
};

/** A wrong password: counted out and one failure more; returns the counter after it. */
export const countFailure = (db: Db, k: CounterKey, t: number) =>
  db
    .updateTable('lockout_counters')
    .set((eb) => ({ failures: eb('failures', '+', 1), in_flight: countOut, updated_at: t }))
    .where('tenant_id', '=', k.tenantId)
    .where('user_id', '=', k.userId)
    .where('location', '=', k.location)
    .returning(['failures', 'lock_count'])
    .executeTakeFirstOrThrow();

export const lockCounter = async (db: Db, k: CounterKey, until: number, lockCount: number): Promise<void> => {
  await db
    .updateTable('lockout_counters')
    .set({ locked_until: until, lock_count: lockCount })
    .where('tenant_id', '=', k.tenantId)
    .where('user_id', '=', k.userId)
    .where('location', '=', k.location)
    .execute();
};

/** Clears every counter of the user (in-flight counts stay: those attempts are still running). */
export const clearCounters = async (db: Db, tenantId: string, userId: string, t: number): Promise<void> => {
  await db
    .updateTable('lockout_counters')
    .set({ failures: 0, lock_count: 0, locked_until: 0, updated_at: t })
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .execute();
};

export const forgetBadPasswords = async (db: Db, tenantId: string, userId: string): Promise<void> => {
  await db
    .deleteFrom('lockout_bad_passwords')
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .execute();
};

export const counterStatus = (db: Db, tenantId: string, userId: string) =>
  db
    .selectFrom('lockout_counters')
    .select(['location', 'failures', 'locked_until', 'lock_count'])
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .execute();

/** The latest lock of each of the users (0 when none), for the admin user list. */
export const lockedUntilOf = async (
  db: Db,
  tenantId: string,
  userIds: string[],
): Promise<Map<string, number>> => {
  if (userIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('lockout_counters')
    .select(['user_id', (eb) => eb.fn.max('locked_until').as('until')])
    .where('tenant_id', '=', tenantId)
    .where('user_id', 'in', userIds)
    .groupBy('user_id')
    .execute();
  return new Map(rows.map((r) => [r.user_id, Number(r.until ?? 0)]));
};

// The sweep (lockout/sweep.ts) decides what goes; these are its statements.

export const deleteExpiredBadPasswords = async (db: Db, t: number): Promise<void> => {
  await db.deleteFrom('lockout_bad_passwords').where('expires_at', '<=', t).execute();
};

/** Counters of unknown names untouched since `before`, neither locked nor in flight at `t`. */
export const deleteLapsedUnknownCounters = async (
  db: Db,
  prefix: string,
  before: number,
  t: number,
): Promise<void> => {
  await db
    .deleteFrom('lockout_counters')
    .where(unknownLike(prefix))
    .where('updated_at', '<', before)
    .where('locked_until', '<=', t)
    .where('in_flight_until', '<=', t)
    .execute();
};

/** Tenants holding more than `max` counters of unknown names. */
export const tenantsOverUnknownCap = (db: Db, prefix: string, max: number) =>
  db
    .selectFrom('lockout_counters')
    .select(['tenant_id', (eb) => eb.fn.countAll<number>().as('n')])
    .where(unknownLike(prefix))
    .groupBy('tenant_id')
    .having((eb) => eb.fn.countAll(), '>', max)
    .execute();

/** The `updated_at` of the tenant's newest unknown-name counter beyond the first `keep`. */
export const unknownCutoff = async (
  db: Db,
  tenantId: string,
  prefix: string,
  keep: number,
): Promise<number | undefined> => {
  const row = await db
    .selectFrom('lockout_counters')
    .select('updated_at')
    .where('tenant_id', '=', tenantId)
    .where(unknownLike(prefix))
    .orderBy('updated_at', 'desc')
    .offset(keep)
    .limit(1)
    .executeTakeFirst();
  return row?.updated_at;
};

/** Evicts the tenant's unknown-name counters up to `cutoff`, then their now orphaned wrong-password hashes. */
export const evictUnknownUpTo = async (
  db: Db,
  tenantId: string,
  prefix: string,
  cutoff: number,
): Promise<void> => {
  await db
    .deleteFrom('lockout_counters')
    .where('tenant_id', '=', tenantId)
    .where(unknownLike(prefix))
    .where('updated_at', '<=', cutoff)
    .execute();
  await db
    .deleteFrom('lockout_bad_passwords')
    .where('tenant_id', '=', tenantId)
    .where(unknownLike(prefix))
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('lockout_counters as c')
            .select('c.user_id')
            .whereRef('c.tenant_id', '=', 'lockout_bad_passwords.tenant_id')
            .whereRef('c.user_id', '=', 'lockout_bad_passwords.user_id'),
        ),
      ),
    )
    .execute();
};
