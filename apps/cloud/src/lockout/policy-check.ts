/**
 * The cloud's lockout must trip before the directory's, or an attacker spraying passwords locks the
 * real account on premises (Entra's guidance: cloud threshold below AD's, cloud duration above it).
 */
import type { DirectoryLockoutPolicy } from '@gatehouse/protocol';

export interface LockoutWarning {
  code: 'threshold_not_lower' | 'duration_not_longer' | 'directory_policy_unknown';
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
        message:
          'No agent has reported the directory lockout policy yet; the cloud settings cannot be compared.',
      },
    ];
  }
  const warnings: LockoutWarning[] = [];
  if (directory.threshold > 0 && cloud.threshold >= directory.threshold) {
    warnings.push({
      code: 'threshold_not_lower',
      message: `The cloud lockout threshold (${cloud.threshold}) is not lower than the directory's (${directory.threshold}): attackers can lock accounts on premises. Use at most ${Math.max(1, Math.floor(directory.threshold / 2))}.`,
    });
  }
  if (directory.threshold > 0 && directory.durationS > 0 && cloud.durationS <= directory.durationS) {
    warnings.push({
      code: 'duration_not_longer',
      message: `The cloud lockout duration (${cloud.durationS} s) is not longer than the directory's (${directory.durationS} s).`,
    });
  }
  return warnings;
};
