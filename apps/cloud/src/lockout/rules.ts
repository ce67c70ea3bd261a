/**
 * Smart lockout's rules that need no database: the types, the escalation, where a counter lapses,
 * and how many more wrong passwords the directory can take. smart-lockout.ts applies them.
 */

export type LocationClass = 'familiar' | 'unfamiliar';

export interface LockoutSettings {
  threshold: number;
  durationS: number;
  /** Wrong passwords the directory may see, every location together, before it would lock the
   * account; null or absent when the directory reported no lockout. */
  directoryBudget?: number | null;
  /** How long the directory may remember a wrong password (s). */
  directoryWindowS?: number;
}

/** Where a sign-in comes from: the client IP and, for browsers, the device cookie. */
export interface Origin {
  ip?: string;
  deviceId?: string;
}

export interface Reservation {
  tenantId: string;
  /** A user id, or the keyed hash of a name no user has (see `unknownSubject`). */
  userId: string;
  location: LocationClass;
  passwordMac: string;
  /** Location keys of this sign-in the user has not succeeded from lately (recorded on success). */
  newKeys: string[];
  /** Some counter of the user had failures when admitted (a success must reset them). */
  hadFailures: boolean;
}

export type Admission =
  | { kind: 'admit'; reservation: Reservation }
  | { kind: 'locked'; location: LocationClass; until: number }
  /** The same wrong password was tried moments ago: answer invalid_credentials, count nothing. */
  | { kind: 'repeat'; location: LocationClass };

export interface SettleResult {
  /** This failure crossed the threshold (or re-locked an already locked user). */
  locked: boolean;
  until?: number;
}

export interface CounterRow {
  location: string;
  failures: number;
  locked_until: number;
  lock_count: number;
  in_flight: number;
  in_flight_until: number;
  /** Who counted in what is in flight: one process's incarnation id, '*' for several, '' unknown. */
  in_flight_by: string;
  updated_at: number;
}

/** How long a wrong password's keyed hash is remembered. */
export const REPEAT_WINDOW_MS = 15 * 60_000;
/** Escalation cap: at most this many doublings of the base duration, and never above a day. */
const MAX_DOUBLINGS = 6;
const MAX_LOCK_MS = 86_400_000;
/** An in-flight count outlives its attempts' deadlines by this much, so a crashed node's count lapses. */
export const IN_FLIGHT_SLACK_MS = 5_000;
/**
 * A counter untouched this long (and not locked) is as good as empty: its failures and escalation
 * are forgotten, for every name alike, so rows of names nobody has can be deleted without that
 * deletion showing. A day is longer than any lock (capped at a day) and than AD's reset window
 * whenever its lockout duration is a day or less.
 */
export const COUNTER_LAPSE_MS = 86_400_000;

/** User ids are UUIDs; subjects of unknown names start with a character no UUID has. */
export const UNKNOWN_PREFIX = '~';

/** The network part of an address: /24 for IPv4, /64 for IPv6 (one household, office or mobile cell). */
export const networkOf = (ip: string): string => {
  const v4 = ip.replace(/^::ffff:/, '');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(v4)) return `${v4.split('.').slice(0, 3).join('.')}.0/24`;
  const groups = ip.split(':');
  return `${groups.slice(0, 4).join(':')}::/64`;
};

export const lockDurationMs = (settings: LockoutSettings, lockCount: number): number =>
  Math.min(settings.durationS * 1000 * 2 ** Math.min(lockCount, MAX_DOUBLINGS), MAX_LOCK_MS);

/**
 * Attempts in flight on the row at `t`. None once their deadlines (and the slack) have passed, or
 * when the one process that counted them all in is `gone` (it crashed: they died with it).
 */
export const inFlightNow = (
  row: { in_flight: number; in_flight_until: number; in_flight_by?: string },
  t: number,
  gone?: ReadonlySet<string>,
): number => (row.in_flight_until > t && !gone?.has(row.in_flight_by ?? '') ? row.in_flight : 0);

/** Who holds the row's count once one more attempt of `self` is counted in. */
export const holderAfter = (row: CounterRow | undefined, inFlight: number, self: string): string =>
  inFlight === 0 || row?.in_flight_by === self ? self : '*';

/** Processes that hold in-flight counts of these rows alone, other than `self`: maybe gone. */
export const soleHolders = (rows: CounterRow[], t: number, self: string, gone: ReadonlySet<string>) =>
  rows
    .filter((r) => inFlightNow(r, t, gone) > 0)
    .map((r) => r.in_flight_by)
    .filter((by) => by !== '' && by !== '*' && by !== self);

/** The counter has lapsed: read it as empty. */
export const lapsed = (row: CounterRow, t: number): boolean =>
  row.updated_at < t - COUNTER_LAPSE_MS && row.locked_until <= t && inFlightNow(row, t) === 0;

/**
 * Both location classes end at the same directory account: their failures add up there. While
 * the newest of them is within the directory's window, all of them count (the directory forgets
 * only after a quiet window, so this errs on the side of counting too many). Returns what blocks
 * the attempt, if anything.
 */
export const directoryBlock = (
  rows: CounterRow[],
  settings: LockoutSettings,
  t: number,
  gone?: ReadonlySet<string>,
): { kind: 'locked'; until: number } | { kind: 'busy' } | null => {
  const budget = settings.directoryBudget;
  if (!budget) return null;
  const windowMs = (settings.directoryWindowS ?? 0) * 1000;
  const live = rows.filter((r) => !lapsed(r, t));
  const newest = Math.max(0, ...live.filter((r) => r.failures > 0).map((r) => r.updated_at));
  const failed = newest > t - windowMs ? live.reduce((n, r) => n + r.failures, 0) : 0;
  if (failed >= budget) return { kind: 'locked', until: newest + windowMs };
  const inFlight = rows.reduce((n, r) => n + inFlightNow(r, t, gone), 0);
  return failed + inFlight >= budget ? { kind: 'busy' } : null;
};
