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
 *   every cloud node sees them. A node that dies leaves its count behind: released as soon as the
 *   process that counted it is known to be gone (options.isGone), else once the latest deadline
 *   of the attempts counted (plus a margin) has passed.
 * - The hot path is short: admitting is one transaction of three statements (where the user has
 *   signed in before, the counter row, counting in); a success is one statement more.
 * - Past the threshold, every further failure locks again, for twice as long each time (capped).
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SignInOutcome } from '@gatehouse/protocol';
import { directWrites, type GroupCommit } from '../db/group-commit.ts';
import type { Db } from '../db/index.ts';
import type { SecretBox } from '../secrets.ts';
import {
  type CounterKey,
  type CounterState,
  clearCounters,
  counterStatus,
  countFailure,
  countIn,
  countOutOnly,
  countOutSuccess,
  ensureCounter,
  familiarKeys,
  forgetBadPasswords,
  isRecentBadPassword,
  lockCounter,
  lockoutTransaction,
  locksRows,
  readCounters,
  recordFamiliarKey,
  rememberBadPassword,
} from '../store/lockout.ts';
import {
  type Admission,
  directoryBlock,
  holderAfter,
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
  soleHolders,
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

/** Every slot is held; `holders` are the other processes that alone hold some of them. */
type Busy = { kind: 'busy'; location: LocationClass; holders?: string[] };
/** This location has no counter row to lock yet (PostgreSQL). */
type Missing = { kind: 'missing'; key: CounterKey };

/** How often an attempt waiting for a free slot looks again. */
const BUSY_WAIT_MS = 10;
/** How often a waiting attempt asks again whether a process holding its slots is gone. */
const ASK_GONE_MS = 500;
/** Incarnations known to be gone, kept per process (a few per restart of a node). */
const MAX_GONE = 1_000;

export interface SmartLockoutOptions {
  /** Counter rows of unknown names kept per tenant (default 100,000). */
  maxUnknownNames?: number;
  /** Told when a background sweep fails (it is retried at the next one). */
  onError?: (err: unknown) => void;
  /** Where a success's settlement is written: the sign-in path's group commit (db/group-commit.ts). */
  writes?: GroupCommit;
  /** This process's incarnation id, written beside the attempts it counts in (default: none). */
  self?: string;
  /**
   * Whether the process of that incarnation is gone (crashed): its in-flight counts died with it
   * and are released at once, not when their deadlines pass. Without it they wait for the deadline.
   */
  isGone?: (incarnation: string) => Promise<boolean>;
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

/** One sign-in attempt being admitted. */
interface Attempt {
  tenantId: string;
  userId: string;
  /** Its location keys (keyed hashes of network and device). */
  keys: string[];
  passwordMac: string;
  settings: LockoutSettings;
  deadline: number;
  self: string;
  /** Incarnations known to be gone: their counts are not in flight. */
  gone: Set<string>;
}

const keysOf = (secrets: SecretBox, tenantId: string, userId: string, origin: Origin): string[] => {
  const keys: string[] = [];
  if (origin.ip)
    keys.push(secrets.mac(`${tenantId}/${userId}/net/${networkOf(origin.ip)}`, 'familiar-location'));
  if (origin.deviceId)
    keys.push(secrets.mac(`${tenantId}/${userId}/dev/${origin.deviceId}`, 'familiar-location'));
  return keys;
};

/** Why an attempt may not be counted in yet (locked, a repeated wrong password, no free slot), if it may not. */
const refusal = async (
  tx: Db,
  a: Attempt,
  location: LocationClass,
  rows: CounterState[],
  counter: CounterState | undefined,
  t: number,
): Promise<Admission | Busy | undefined> => {
  if (counter && counter.locked_until > t) return { kind: 'locked', location, until: counter.locked_until };
  const directory = directoryBlock(rows, a.settings, t, a.gone);
  if (directory?.kind === 'locked') return { kind: 'locked', location, until: directory.until };
  if (directory?.kind === 'busy') return { kind: 'busy', location };
  const failures = counter?.failures ?? 0;
  // Wrong passwords are only remembered along with a failure, so with none there is nothing to look up.
  if (failures > 0 && (await isRecentBadPassword(tx, a.tenantId, a.userId, a.passwordMac, t)))
    return { kind: 'repeat', location };
  // Already past the threshold (a lock expired): one attempt at a time, each failure re-locks.
  const room = failures >= a.settings.threshold ? 1 : a.settings.threshold - failures;
  if ((counter ? inFlightNow(counter, t, a.gone) : 0) >= room) return { kind: 'busy', location };
  return undefined;
};

/** One admission attempt, inside its transaction; 'busy' when every slot below the threshold is held. */
const admitIn = async (
  tx: Db,
  postgres: boolean,
  a: Attempt,
  t: number,
): Promise<Admission | Busy | Missing> => {
  const seen = a.keys.length === 0 ? [] : await familiarKeys(tx, a.tenantId, a.userId, a.keys);
  const location: LocationClass = seen.length > 0 ? 'familiar' : 'unfamiliar';
  const k = { tenantId: a.tenantId, userId: a.userId, location };
  // Lock the counter rows (PostgreSQL) so concurrent admissions on any node are serialised;
  // SQLite serialises whole transactions already. A row must exist to be locked. When this
  // location's is missing (the user's first attempt from it) it is made outside this
  // transaction and the admission runs again: inserting while holding the other location's row
  // lock waits on a concurrent insert whose transaction waits on that lock, a deadlock.
  const rows = await readCounters(tx, a.tenantId, a.userId, postgres);
  if (postgres && !rows.some((r) => r.location === location)) return { kind: 'missing', key: k };
  const found = rows.find((r) => r.location === location);
  // A lapsed counter is read, and rewritten below, as an empty one.
  const stale = found !== undefined && lapsed(found, t);
  const counter = stale ? undefined : found;
  const refused = await refusal(tx, a, location, rows, counter, t);
  if (refused?.kind === 'busy') return { ...refused, holders: soleHolders(rows, t, a.self, a.gone) };
  if (refused) return refused;
  // Counts of a process that is gone read as none, and are overwritten here.
  const inFlight = counter ? inFlightNow(counter, t, a.gone) : 0;
  const until = Math.max(inFlight > 0 ? counter!.in_flight_until : 0, a.deadline + IN_FLIGHT_SLACK_MS);
  const by = holderAfter(counter, inFlight, a.self);
  await countIn(tx, k, { inFlight: inFlight + 1, until, by, t, reset: stale });
  const fresh = new Set(
    seen.filter((r) => t - r.last_success_at < FAMILIAR_REFRESH_MS).map((r) => r.key_hash),
  );
  return {
    kind: 'admit',
    reservation: {
      tenantId: a.tenantId,
      userId: a.userId,
      location,
      passwordMac: a.passwordMac,
      newKeys: a.keys.filter((key) => !fresh.has(key)),
      hadFailures: rows.some((r) => r.failures > 0 || r.lock_count > 0),
    },
  };
};

/**
 * Admits, waiting while the slots left below the threshold are held by attempts still in flight.
 * Slots held by another process alone are asked about: if it is gone, they are free at once.
 */
const admitWaiting = async (
  db: Db,
  now: () => number,
  a: Attempt,
  isGone: SmartLockoutOptions['isGone'],
): Promise<Admission> => {
  const postgres = locksRows(db);
  // Bounded by real time as well as the request's deadline, whatever clock `now` is.
  const giveUp = performance.now() + Math.max(0, a.deadline - now());
  const asked = new Map<string, number>();
  for (;;) {
    const t = now();
    const r = await lockoutTransaction(db, (tx) => admitIn(tx, postgres, a, t));
    if (r.kind === 'missing') {
      await ensureCounter(db, r.key, t);
      continue;
    }
    if (r.kind !== 'busy') return r;
    if (isGone && (await foundGone(r.holders ?? [], asked, isGone, a.gone))) continue;
    // Wait for one to settle rather than refuse a user who may well have the right password.
    if (performance.now() + BUSY_WAIT_MS >= giveUp)
      return { kind: 'locked', location: r.location, until: a.deadline };
    await sleep(BUSY_WAIT_MS / 2 + Math.random() * BUSY_WAIT_MS);
  }
};

/** Asks about each holder at most every ASK_GONE_MS; true when one turned out to be gone. */
const foundGone = async (
  holders: string[],
  asked: Map<string, number>,
  isGone: (incarnation: string) => Promise<boolean>,
  gone: Set<string>,
): Promise<boolean> => {
  let found = false;
  for (const h of new Set(holders)) {
    const at = performance.now();
    if ((asked.get(h) ?? -Infinity) > at - ASK_GONE_MS) continue;
    asked.set(h, at);
    if (!(await isGone(h))) continue;
    if (gone.size >= MAX_GONE) gone.delete(gone.values().next().value!);
    gone.add(h);
    found = true;
  }
  return found;
};

const settleSuccess = async (writes: GroupCommit, r: Reservation, t: number): Promise<SettleResult> => {
  await writes.run(async (db) => {
    // One statement: count out, and (only if there were any) reset every failure of the user.
    await countOutSuccess(db, r, r.hadFailures, t);
    if (r.hadFailures) await forgetBadPasswords(db, r.tenantId, r.userId);
    for (const key of r.newKeys) await recordFamiliarKey(db, r.tenantId, r.userId, key, t);
  });
  return { locked: false };
};

const settleWrongPassword = (db: Db, r: Reservation, settings: LockoutSettings, t: number) =>
  lockoutTransaction(db, async (tx): Promise<SettleResult> => {
    await rememberBadPassword(tx, r.tenantId, r.userId, r.passwordMac, t + REPEAT_WINDOW_MS);
    const row = await countFailure(tx, r, t);
    if (row.failures < settings.threshold) return { locked: false };
    const until = t + lockDurationMs(settings, row.lock_count);
    await lockCounter(tx, r, until, row.lock_count + 1);
    return { locked: true, until };
  });

const settle = async (
  db: Db,
  writes: GroupCommit,
  r: Reservation,
  outcome: SignInOutcome,
  settings: LockoutSettings,
  t: number,
): Promise<SettleResult> => {
  if (outcome === 'success') return settleSuccess(writes, r, t);
  if (outcome === 'invalid_credentials') return settleWrongPassword(db, r, settings, t);
  await countOutOnly(db, r);
  return { locked: false };
};

export const createSmartLockout = (
  db: Db,
  secrets: SecretBox,
  now: () => number,
  options: SmartLockoutOptions = {},
): SmartLockout => {
  const maxUnknown = options.maxUnknownNames ?? MAX_UNKNOWN_NAMES;
  const self = options.self ?? '';
  const gone = new Set<string>();
  const writes = options.writes ?? directWrites(db);
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
    admit(tenantId, userId, password, origin, settings, deadline) {
      sweepSoon();
      const keys = keysOf(secrets, tenantId, userId, origin);
      const passwordMac = secrets.mac(`${tenantId}/${userId}/${password}`, 'lockout-bad-password');
      const a = { tenantId, userId, keys, passwordMac, settings, deadline, self, gone };
      return admitWaiting(db, now, a, options.isGone);
    },
    settle: (r, outcome, settings) => settle(db, writes, r, outcome, settings, now()),
    async unlock(tenantId, userId) {
      await lockoutTransaction(db, async (tx) => {
        await clearCounters(tx, tenantId, userId, now());
        await forgetBadPasswords(tx, tenantId, userId);
      });
    },
    async status(tenantId, userId) {
      const rows = await counterStatus(db, tenantId, userId);
      return rows.map((r) => ({
        location: r.location as LocationClass,
        failures: r.failures,
        lockedUntil: r.locked_until,
        lockCount: r.lock_count,
      }));
    },
  };
};
