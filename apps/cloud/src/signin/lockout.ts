/**
 * The smart-lockout seam. The authenticator consults `check` before any password work (so a
 * locked-out user never costs the directory a bind) and reports every outcome afterwards, so a
 * policy that reserves capacity in `check` can always release it.
 */
import type { SignInOutcome } from '@gatehouse/protocol';
import type { LockoutSettings, SmartLockout } from '../lockout/smart-lockout.ts';
import { lockoutDecisions, lockoutLocks } from '../metrics/families.ts';

export interface LockoutAttempt {
  tenantId: string;
  /** The sign-in name, trimmed and lower-cased. */
  login: string;
  /** The user it denotes, or null for an unknown name. */
  userId: string | null;
  /** Only for keyed hashes of wrong passwords (repeat detection); never stored as is. */
  password: string;
  origin: { ip?: string; deviceId?: string };
  /** The tenant's effective lockout (store/tenants.ts `effectiveLockout`). */
  settings: LockoutSettings;
  /** The request's deadline (ms since epoch): an attempt counted in flight lapses soon after it. */
  deadline: number;
}

export type LockoutDecision =
  | { kind: 'admit'; ticket?: unknown }
  | { kind: 'locked'; until: number }
  /** The same wrong password was just tried: answer invalid_credentials without asking anyone. */
  | { kind: 'repeat' };

export interface LockoutPolicy {
  check(attempt: LockoutAttempt): Promise<LockoutDecision>;
  /** Every outcome but success, after an admitted attempt; the policy decides which ones count. */
  recordFailure(attempt: LockoutAttempt, ticket: unknown, outcome: SignInOutcome): Promise<void>;
  recordSuccess(attempt: LockoutAttempt, ticket: unknown): Promise<void>;
}

/** Nobody is ever locked out. */
export const noLockout: LockoutPolicy = {
  check: async () => ({ kind: 'admit' }),
  recordFailure: async () => {},
  recordSuccess: async () => {},
};

/**
 * Smart lockout (lockout/smart-lockout.ts) behind the seam. A name no user has is counted and
 * locked exactly like a user, under a keyed hash of the name: otherwise the name that never locks
 * is the one that does not exist.
 */
export const smartLockoutPolicy = (
  smart: SmartLockout,
  /** Told when a failure locks the user (for the audit log). */
  onLocked: (attempt: LockoutAttempt, until: number) => void = () => {},
): LockoutPolicy => ({
  async check(a) {
    const subject = a.userId ?? smart.unknownSubject(a.tenantId, a.login);
    const r = await smart.admit(a.tenantId, subject, a.password, a.origin, a.settings, a.deadline);
    lockoutDecisions.inc({ decision: r.kind });
    if (r.kind === 'admit') return { kind: 'admit', ticket: r.reservation };
    return r.kind === 'locked' ? { kind: 'locked', until: r.until } : { kind: 'repeat' };
  },
  async recordFailure(a, ticket, outcome) {
    if (!ticket) return;
    const r = await smart.settle(ticket as Parameters<SmartLockout['settle']>[0], outcome, a.settings);
    if (r.locked) lockoutLocks.inc();
    // The audit log is about accounts; a name nobody has is not one.
    if (r.locked && r.until && a.userId) onLocked(a, r.until);
  },
  async recordSuccess(a, ticket) {
    if (ticket) await smart.settle(ticket as Parameters<SmartLockout['settle']>[0], 'success', a.settings);
  },
});
