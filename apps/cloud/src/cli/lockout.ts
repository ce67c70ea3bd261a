/** Operator commands for smart lockout: a user's lockout state, unlock, and the policy check. */
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { lockoutWarnings } from '../lockout/policy-check.ts';
import { createSmartLockout } from '../lockout/smart-lockout.ts';
import { audit } from '../store/audit.ts';
import { getTenant } from '../store/tenants.ts';
import { findByLogin } from '../store/users.ts';
import { Upn } from '../store/util.ts';
import { type CliEnv, type Command, command, iso, OPERATOR, str, table, tenant } from './shared.ts';

const userOf = async (env: CliEnv, tenantId: string, upn: string) => {
  const t = await getTenant(env.db, tenantId);
  const u = await findByLogin(env.db, t.id, upn, 'upn');
  if (!u) throw new GatehouseError('not_found', { upn });
  return u;
};

export const lockoutCommands: Record<string, Command> = {
  'user lockout': command({
    summary: "a user's smart lockout counters",
    usage: '--tenant T --upn U',
    options: { tenant: str, upn: str },
    schema: z.object({ tenant, upn: Upn }),
    async run(env, a) {
      const u = await userOf(env, a.tenant, a.upn);
      const rows = await createSmartLockout(env.db, env.secrets, env.now).status(a.tenant, u.id);
      const now = env.now();
      const shown = rows.map((r) => ({
        location: r.location,
        failures: r.failures,
        locked: r.lockedUntil > now,
        until: r.lockedUntil > now ? iso(r.lockedUntil) : null,
        lockouts: r.lockCount,
      }));
      return {
        json: { upn: u.upn, counters: shown },
        text: shown.length ? table(shown) : 'no failures recorded',
      };
    },
  }),

  'user unlock': command({
    summary: "clears a user's smart lockout",
    usage: '--tenant T --upn U',
    options: { tenant: str, upn: str },
    schema: z.object({ tenant, upn: Upn }),
    async run(env, a) {
      const u = await userOf(env, a.tenant, a.upn);
      await createSmartLockout(env.db, env.secrets, env.now).unlock(a.tenant, u.id);
      await audit(
        env.db,
        { tenantId: a.tenant, actor: OPERATOR, action: 'user.unlock', target: u.upn },
        env.now(),
      );
      return { json: { upn: u.upn, unlocked: true }, text: `${u.upn} unlocked` };
    },
  }),

  'lockout check': command({
    summary: "the applied smart lockout against the directory's own policy",
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      const t = await getTenant(env.db, a.tenant);
      const warnings = lockoutWarnings(
        { threshold: t.lockoutThreshold, durationS: t.lockoutDurationS },
        t.directoryLockout,
      );
      const cloud = { threshold: t.lockoutThreshold, durationS: t.lockoutDurationS };
      const applied = t.effectiveLockout;
      return {
        json: { cloud, applied, directory: t.directoryLockout, warnings },
        text: [
          `cloud setting: threshold ${cloud.threshold}, duration ${cloud.durationS} s`,
          `applied: threshold ${applied.threshold}, duration ${applied.durationS} s` +
            (applied.directoryBudget === null
              ? ''
              : `; at most ${applied.directoryBudget} wrong passwords reach the directory within ${applied.directoryWindowS} s, every location together`),
          t.directoryLockout
            ? `directory: threshold ${t.directoryLockout.threshold}, duration ${t.directoryLockout.durationS} s`
            : 'directory: not reported yet',
          ...warnings.map((w) => `warning: ${w.message}`),
        ].join('\n'),
      };
    },
  }),
};
