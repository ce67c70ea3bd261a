/**
 * The operator CLI's service commands (registration tokens, settings, agents, sign-ins; the
 * application commands are in apps.ts).
 * Every change writes an audit row with actor "operator".
 */
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { storedLiveness } from '../config.ts';
import { openRevoker } from '../gateway/revocation.ts';
import { lockoutWarnings } from '../lockout/policy-check.ts';
import { countActiveAgents, deleteAgent, listAgents } from '../store/agents.ts';
import { audit } from '../store/audit.ts';
import { createRegistrationToken } from '../store/registration-tokens.ts';
import { serviceUrls } from '../store/service-urls.ts';
import { listSignIns } from '../store/sign-ins.ts';
import { getTenant, updateSettings } from '../store/tenants.ts';
import { type Command, command, count, iso, OPERATOR, onOff, str, table, tenant } from './shared.ts';

export const opsCommands: Record<string, Command> = {
  'token create': command({
    summary: 'a one-time agent registration token',
    usage: '--tenant T [--ttl SECONDS]',
    options: { tenant: str, ttl: str },
    schema: z.object({
      tenant,
      ttl: count
        .min(30)
        .max(7 * 86_400)
        .optional(),
    }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const ttl = a.ttl ?? env.config.registrationTokenTtlS;
      const t = await createRegistrationToken(env.db, a.tenant, OPERATOR, ttl, env.now());
      await audit(
        env.db,
        {
          tenantId: a.tenant,
          actor: OPERATOR,
          action: 'registration_token.create',
          detail: { expiresAt: t.expiresAt },
        },
        env.now(),
      );
      const { publicUrl } = await serviceUrls(env.db, env.config);
      // The CA file is the service CA the agent host must pin (DATA_DIR/tls/ca.pem when generated).
      const register = `gatehouse-agent register --cloud ${publicUrl} --ca-file CLOUD-CA.pem --token ${t.token}`;
      return {
        json: {
          token: t.token,
          expiresAt: t.expiresAt,
          expires: iso(t.expiresAt),
          cloud: publicUrl,
          register,
        },
        text: `${t.token}\nexpires ${iso(t.expiresAt)} (single use)\non the agent host: ${register}`,
      };
    },
  }),

  'settings set': command({
    summary:
      'tenant switches: pass-through, legacy authentication, just-in-time users, login attribute, smart lockout',
    usage:
      '--tenant T [--pta on|off] [--legacy-auth on|off] [--jit-users on|off] [--login-attribute upn|mail] [--lockout-threshold N] [--lockout-duration S]',
    options: {
      tenant: str,
      pta: str,
      'legacy-auth': str,
      'jit-users': str,
      'login-attribute': str,
      'lockout-threshold': str,
      'lockout-duration': str,
    },
    schema: z.object({
      tenant,
      pta: onOff.optional(),
      'legacy-auth': onOff.optional(),
      'jit-users': onOff.optional(),
      'login-attribute': z.enum(['upn', 'mail']).optional(),
      'lockout-threshold': count.max(100).optional(),
      'lockout-duration': count.max(86_400).optional(),
    }),
    async run(env, a) {
      const settings = {
        ptaEnabled: a.pta,
        legacyAuth: a['legacy-auth'],
        jitUsers: a['jit-users'],
        loginAttribute: a['login-attribute'],
        lockoutThreshold: a['lockout-threshold'],
        lockoutDurationS: a['lockout-duration'],
      };
      const changed = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
      if (Object.keys(changed).length === 0)
        throw new GatehouseError('validation_failed', [{ path: '(flags)', message: 'nothing to set' }]);
      const activeAgents = await countActiveAgents(env.db, a.tenant, {
        now: env.now(),
        inactiveAfterMs: storedLiveness(env.config),
      });
      const t = await updateSettings(env.db, a.tenant, changed, { activeAgents });
      await audit(
        env.db,
        { tenantId: a.tenant, actor: OPERATOR, action: 'settings.update', target: a.tenant, detail: changed },
        env.now(),
      );
      const { caCertPem: _, ...shown } = t;
      // A lockout change, and turning pass-through on (from then on wrong passwords reach the
      // directory), say what smart lockout applies against the directory's policy.
      const warnings =
        changed.lockoutThreshold !== undefined || changed.lockoutDurationS !== undefined || a.pta === true
          ? lockoutWarnings(
              { threshold: t.lockoutThreshold, durationS: t.lockoutDurationS },
              t.directoryLockout,
            )
          : [];
      return {
        json: { ...shown, warnings },
        text: [
          `pta ${t.ptaEnabled ? 'on' : 'off'}, legacy-auth ${t.legacyAuth ? 'on' : 'off'}, jit-users ${t.jitUsers ? 'on' : 'off'}, login-attribute ${t.loginAttribute}, lockout ${t.lockoutThreshold}/${t.lockoutDurationS}s (applied ${t.effectiveLockout.threshold}/${t.effectiveLockout.durationS}s)`,
          ...warnings.map((w) => `warning: ${w.message}`),
        ].join('\n'),
      };
    },
  }),

  'agents list': command({
    summary: 'agents with their status, version and certificate expiry',
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const agents = await listAgents(env.db, a.tenant, {
        now: env.now(),
        inactiveAfterMs: storedLiveness(env.config),
      });
      const rows = agents.map((g) => ({
        id: g.id,
        host: g.hostname,
        version: g.version,
        status: g.status,
        ip: g.externalIp,
        last_seen: iso(g.lastSeenAt),
        cert_expires: iso(g.certNotAfter),
      }));
      return { json: agents, text: table(rows) };
    },
  }),

  'agents delete': command({
    summary: 'deletes an agent; returns once its connections are closed',
    usage: '--tenant T --id AGENT_ID',
    options: { tenant: str, id: str },
    schema: z.object({ tenant, id: z.string({ error: 'is required' }).min(1) }),
    async run(env, a) {
      const revoker = await openRevoker(env.config);
      try {
        await deleteAgent(env.db, a.tenant, a.id, env.now());
        const r = await revoker.revoke({ tenantId: a.tenant, agentId: a.id }).catch((err: unknown) => {
          throw new GatehouseError('internal_error', {
            deleted: a.id,
            connection: `not confirmed closed (${String(err)}); the cloud drops it at its next presence write, within ${env.config.presenceWriteMs} ms`,
          });
        });
        await audit(
          env.db,
          {
            tenantId: a.tenant,
            actor: OPERATOR,
            action: 'agent.delete',
            target: a.id,
            detail: { connectionsClosed: r.closed, nodes: r.nodes },
          },
          env.now(),
        );
        const where = env.config.natsUrl ? 'on any cloud node' : `on ${env.config.dataDir}`;
        const live = !r.reached
          ? `no cloud is running ${where}, so it has no live connection`
          : r.closed > 0
            ? `its ${r.closed} live connection(s) were closed before this returned, and no sign-in goes to it any more`
            : `it had no live connection ${where}`;
        return {
          json: { deleted: a.id, connectionsClosed: r.closed, nodes: r.nodes, cloudReached: r.reached },
          text: `agent ${a.id} deleted: its certificate is refused; ${live}`,
        };
      } finally {
        await revoker.close();
      }
    },
  }),

  'signins list': command({
    summary: 'the sign-in log: outcome, agent, latencies, client IP',
    usage: '--tenant T [--limit N] [--upn U] [--outcome CODE] [--agent ID] [--since ISO-TIME]',
    options: { tenant: str, limit: str, upn: str, outcome: str, agent: str, since: str },
    schema: z.object({
      tenant,
      limit: count.max(1000).default(50),
      upn: z.string().max(256).optional(),
      outcome: z.string().max(64).optional(),
      agent: z.string().max(128).optional(),
      since: z.iso
        .datetime({ offset: true })
        .transform((v) => Date.parse(v))
        .optional(),
    }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const rows = await listSignIns(env.db, a.tenant, {
        limit: a.limit,
        upn: a.upn,
        outcome: a.outcome,
        agentId: a.agent,
        from: a.since,
      });
      return {
        json: rows,
        text: table(
          rows.map((r) => ({
            at: iso(r.at),
            upn: r.upn,
            method: r.method,
            outcome: r.outcome,
            agent: r.agentId,
            directory: r.directoryCode,
            ms: Math.round(r.totalMs),
            ip: r.clientIp,
          })),
        ),
      };
    },
  }),
};
