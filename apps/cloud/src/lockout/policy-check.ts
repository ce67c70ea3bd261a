/**
 * The cloud's lockout must trip before the directory's, or an attacker spraying passwords locks the
 * real account on premises. Tenant settings looser than the directory are refused when set and
 * tightened when the directory reports a stricter policy later (store/tenants.ts
 * `effectiveLockout`); these warnings tell the administrator what is actually applied.
 */
import type { DirectoryLockoutPolicy } from '@gatehouse/protocol';
import { effectiveLockout, lockoutBounds } from '../store/tenants.ts';

export interface LockoutWarning {
  code:
    | 'threshold_follows_directory'
    | 'duration_follows_directory'
    | 'directory_locks_at_first_failure'
    | 'directory_policy_unknown';
  message: string;
}

export const lockoutWarnings = (
  cloud: { threshold: number; durationS: number },
  directory: DirectoryLockoutPolicy | null,
): LockoutWarning[] => {
  if (!directory) {
    return [
      {
        code: 'directory_policy_unknown',
        message: `No agent has reported the directory lockout policy yet: smart lockout uses the settings as they are (${cloud.threshold} failures, ${cloud.durationS} s), which must be below the directory's threshold.`,
      },
    ];
  }
  const bounds = lockoutBounds(directory);
  if (!bounds) return [];
  const applied = effectiveLockout(cloud, directory);
  const warnings: LockoutWarning[] = [];
  if (directory.threshold === 1) {
    warnings.push({
      code: 'directory_locks_at_first_failure',
      message:
        "The directory locks an account at its first wrong password: no cloud setting can keep attackers from locking accounts on premises. Raise the directory's lockout threshold.",
    });
  } else if (cloud.threshold > bounds.maxThreshold) {
    warnings.push({
      code: 'threshold_follows_directory',
      message: `The cloud lockout threshold (${cloud.threshold}) would let familiar and unfamiliar locations together reach the directory's (${directory.threshold}): smart lockout uses ${applied.threshold} per location.`,
    });
  }
  if (cloud.durationS < bounds.minDurationS) {
    warnings.push({
      code: 'duration_follows_directory',
      message: `The cloud lockout duration (${cloud.durationS} s) is shorter than the directory's (${directory.durationS ? `${directory.durationS} s` : 'until unlocked'}): smart lockout uses ${applied.durationS} s.`,
    });
  }
  return warnings;
};
