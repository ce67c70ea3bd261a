/** Operator commands for the audit log and cloud-only password resets (parity with the admin API). */
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { audit, listAudit } from '../store/audit.ts';
import { getTenant } from '../store/tenants.ts';
import { findByLogin, setCloudPassword } from '../store/users.ts';
import { Upn } from '../store/util.ts';
import {
  type Command,
  command,
  count,
  flag,
  iso,
  OPERATOR,
  passwordSource,
  str,
  table,
  tenant,
} from './shared.ts';

const pw = passwordSource('password-file', 'password-stdin');

export const auditCommands: Record<string, Command> = {
  'audit list': command({
    summary: 'the audit log, newest first',
    usage: '--tenant T [--limit N] [--before-id ID]',
    options: { tenant: str, limit: str, 'before-id': str },
    schema: z.object({ tenant, limit: count.max(1000).default(100), 'before-id': count.optional() }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const rows = await listAudit(env.db, a.tenant, { limit: a.limit, beforeId: a['before-id'] });
      return {
        json: rows,
        text: table(
          rows.map((r) => ({
            id: r.id,
            at: iso(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: r.detail === null ? null : JSON.stringify(r.detail),
          })),
        ),
      };
    },
  }),

  'user reset-password': command({
    summary: "sets a cloud-only user's password",
    usage: '--tenant T --upn U (--password-file F | --password-stdin)',
    options: { tenant: str, upn: str, 'password-file': str, 'password-stdin': flag },
    schema: z
      .object({
        tenant,
        upn: Upn,
        'password-file': z.string().optional(),
        'password-stdin': z.boolean().optional(),
      })
      .refine(pw.refine, { message: pw.message, path: ['password-file'] }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const u = await findByLogin(env.db, a.tenant, a.upn, 'upn');
      if (!u) throw new GatehouseError('not_found', { upn: a.upn });
      const password = await env.readPassword(a['password-file'], a['password-stdin'] === true);
      await setCloudPassword(env.db, a.tenant, u.id, password, env.now());
      await audit(
        env.db,
        { tenantId: a.tenant, actor: OPERATOR, action: 'user.reset_password', target: u.upn },
        env.now(),
      );
      return { json: { upn: u.upn, reset: true }, text: `password of ${u.upn} reset` };
    },
  }),
};
