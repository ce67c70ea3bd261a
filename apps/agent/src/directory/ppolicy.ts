/**
 * OpenLDAP ppolicy (slapo-ppolicy, draft-behera): binds carry the password policy request control,
 * and its response says what a bare result code cannot:
 *
 * | bind result | control error       | outcome                                      | password right? |
 * |-------------|---------------------|----------------------------------------------|-----------------|
 * | 0           | changeAfterReset    | password_must_change (pwdReset: bind works!) | yes             |
 * | 49          | passwordExpired     | password_expired                             | yes             |
 * | 49          | accountLocked       | read the entry, see `lockedOutcome`          | unknown         |
 * | 49          | none                | invalid_credentials                          | no              |
 *
 * slapd refuses a locked account before it looks at the password, so for those states the agent
 * cannot know whether the password was right. An account state is revealed only to the right
 * password (AD reveals 533/701 only then), so the administrative lock (pwdAccountLockedTime
 * 000001010000Z), a passed pwdEndTime and a future pwdStartTime answer invalid_credentials; the
 * directory code (e.g. 49/ppolicy:pwdEndTime) tells the administrator in the sign-in log what it
 * really was. A failure lockout is the exception, as AD's 775 is: locked_out for any password.
 */
import type { AgentOutcome } from '@gatehouse/protocol';
import { PasswordPolicyControl, PasswordPolicyError } from 'ldapts';

/** pwdAccountLockedTime with this value means "locked by an administrator" (slapo-ppolicy(5)). */
export const ADMIN_LOCK = '000001010000Z';

export const STATE_ATTRIBUTES = ['pwdAccountLockedTime', 'pwdEndTime', 'pwdStartTime'];

export const policyControl = () => new PasswordPolicyControl();

/** What the control says about a bind; null when it says nothing that changes the outcome. */
export const controlVerdict = (
  bindOk: boolean,
  ctl: PasswordPolicyControl,
): { outcome: AgentOutcome; directoryCode: string } | 'locked' | null => {
  const error = ctl.value?.error;
  if (bindOk) {
    return error === PasswordPolicyError.ChangeAfterReset
      ? { outcome: 'password_must_change', directoryCode: '0/ppolicy:changeAfterReset' }
      : null;
  }
  if (error === PasswordPolicyError.PasswordExpired)
    return { outcome: 'password_expired', directoryCode: '49/ppolicy:passwordExpired' };
  if (error === PasswordPolicyError.AccountLocked) return 'locked';
  return null;
};

/** GeneralizedTime (YYYYMMDDHHMMSS[.f]Z) -> ms since epoch; NaN when unreadable. */
export const generalizedTime = (s: string | undefined): number => {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:[.,]\d+)?Z$/.exec(s ?? '');
  if (!m) return Number.NaN;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] ?? 0));
};

/** Why slapd said "account locked": the entry's ppolicy attributes decide. */
export const lockedOutcome = (
  entry: Record<string, string | undefined> | undefined,
  now = Date.now(),
): { outcome: AgentOutcome; directoryCode: string } => {
  const locked = entry?.pwdAccountLockedTime;
  if (locked === ADMIN_LOCK) return { outcome: 'invalid_credentials', directoryCode: '49/ppolicy:adminLock' };
  if (locked) return { outcome: 'locked_out', directoryCode: '49/ppolicy:locked' };
  if (generalizedTime(entry?.pwdEndTime) <= now)
    return { outcome: 'invalid_credentials', directoryCode: '49/ppolicy:pwdEndTime' };
  if (generalizedTime(entry?.pwdStartTime) > now)
    return { outcome: 'invalid_credentials', directoryCode: '49/ppolicy:pwdStartTime' };
  // slapd said locked and the entry no longer shows why (cleared meanwhile, or unreadable).
  return { outcome: 'locked_out', directoryCode: '49/ppolicy:accountLocked' };
};
