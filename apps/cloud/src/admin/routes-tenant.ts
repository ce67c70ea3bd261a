/**
 * Admin API: the tenant's overview and settings, pass-through authentication agents, registration
 * tokens, the agent package and sync. Every change writes an audit row (actor: the admin's UPN).
 */
import { randomUUID } from 'node:crypto';
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { storedLiveness } from '../config.ts';
import type { CloudContext } from '../context.ts';
import { lockoutWarnings } from '../lockout/policy-check.ts';
import { countActiveAgents, deleteAgent, listAgents } from '../store/agents.ts';
import { createRegistrationToken } from '../store/registration-tokens.ts';
import { signInStatsByAgent } from '../store/sign-ins.ts';
import { syncHealth } from '../store/sync-runs.ts';
import { getTenant, type Tenant, updateSettings } from '../store/tenants.ts';
import { countUsersBySource } from '../store/users.ts';
import { agentPackage, certFingerprint, installCommands } from './agent-package.ts';
import { type RouteDef, route } from './api.ts';
import type { AdminDeps } from './deps.ts';
import { SyncHealthOut, SyncRunOut, syncHealthOut, syncRunOut, waitForRun } from './routes-groups.ts';

const HOUR = 3_600_000;

const Warning = z.object({ code: z.string(), message: z.string() });
export const TenantSettingsOut = z.object({
  id: z.string(),
  name: z.string(),
  ptaEnabled: z.boolean(),
  legacyAuth: z.boolean(),
  jitUsers: z.boolean(),
  loginAttribute: z.enum(['upn', 'mail']),
  lockoutThreshold: z.number().int(),
  lockoutDurationS: z.number().int(),
  directoryLockout: z.object({ threshold: z.number(), durationS: z.number() }).nullable(),
  /** What smart lockout applies: the settings, tightened to stay inside the directory's lockout. */
  effectiveLockout: z.object({
    threshold: z.number().int(),
    durationS: z.number().int(),
    directoryBudget: z.number().int().nullable(),
    directoryWindowS: z.number().int(),
  }),
  lockoutWarnings: z.array(Warning),
});

const settingsOf = (t: Tenant) => ({
  id: t.id,
  name: t.name,
  ptaEnabled: t.ptaEnabled,
  legacyAuth: t.legacyAuth,
  jitUsers: t.jitUsers,
  loginAttribute: t.loginAttribute,
  lockoutThreshold: t.lockoutThreshold,
  lockoutDurationS: t.lockoutDurationS,
  directoryLockout: t.directoryLockout,
  effectiveLockout: t.effectiveLockout,
  lockoutWarnings: lockoutWarnings(
    { threshold: t.lockoutThreshold, durationS: t.lockoutDurationS },
    t.directoryLockout,
  ),
});

const signInStats = (ctx: CloudContext, tenantId: string, since: number) =>
  signInStatsByAgent(ctx.db, tenantId, since);

export const PatchSettings = z
  .object({
    ptaEnabled: z.boolean(),
    legacyAuth: z.boolean(),
    jitUsers: z.boolean(),
    loginAttribute: z.enum(['upn', 'mail']),
    lockoutThreshold: z.number().int().min(1).max(100),
    lockoutDurationS: z.number().int().min(1).max(86_400),
  })
  .partial()
  .strict()
  .refine((s) => Object.keys(s).length > 0, { message: 'nothing to change' });

const AgentId = z.object({ agentId: z.string().min(1).max(128) });

export const AgentOut = z.object({
  id: z.string(),
  machineName: z.string(),
  externalIp: z.string().nullable(),
  version: z.string(),
  status: z.enum(['active', 'inactive']),
  connected: z.boolean(),
  lastSeenAt: z.number().nullable(),
  certNotAfter: z.number(),
  createdAt: z.number(),
  signInsLastHour: z.number(),
  failuresLastHour: z.number(),
});

/** One threshold for every route here, so the overview, the PTA switch and the agent list agree on Active. */
const liveness = (ctx: CloudContext) => ({ now: ctx.now(), inactiveAfterMs: storedLiveness(ctx.config) });

export const tenantRoutes = (deps: AdminDeps): RouteDef[] => [
  meRoute(),
  overviewRoute(deps),
  settingsRoute(deps),
  patchSettingsRoute(deps),
  agentsRoute(deps),
  deleteAgentRoute(deps),
  registrationTokenRoute(deps),
  agentPackageRoute(deps),
  syncRoute(deps),
];

const meRoute = (): RouteDef =>
  route({
    method: 'GET',
    path: '/me',
    summary: 'The signed-in administrator (or service principal) and what they may do',
    permission: 'read',
    response: z.object({
      kind: z.enum(['user', 'service_principal']),
      /** The user's UPN; for a service principal, its audit name "APP NAME (app CLIENT_ID)". */
      upn: z.string(),
      displayName: z.string().nullable(),
      roles: z.array(z.string()),
      permissions: z.array(z.string()),
    }),
    handler: async ({ caller }) => ({
      kind: caller.actor.kind,
      upn: caller.actor.name,
      displayName: caller.user ? caller.user.displayName : caller.actor.name,
      roles: caller.actor.roles,
      permissions: [...caller.permissions],
    }),
  });

const overviewRoute = ({ ctx }: AdminDeps): RouteDef =>
  route({
    method: 'GET',
    path: '/overview',
    summary: 'Tenant settings, pass-through authentication status and counts',
    permission: 'read',
    response: z.object({
      tenant: TenantSettingsOut,
      pta: z.object({ enabled: z.boolean(), canEnable: z.boolean(), refusal: z.string().nullable() }),
      counts: z.object({
        users: z.number(),
        cloudUsers: z.number(),
        syncedUsers: z.number(),
        agents: z.number(),
        activeAgents: z.number(),
        signInsLastHour: z.number(),
        failuresLastHour: z.number(),
      }),
      sync: SyncHealthOut,
    }),
    handler: async ({ caller }) => overviewOf(ctx, caller.tenantId),
  });

const overviewOf = async (ctx: CloudContext, tenantId: string) => {
  const t = await getTenant(ctx.db, tenantId);
  const users = await countUsersBySource(ctx.db, t.id);
  const agents = await listAgents(ctx.db, t.id, liveness(ctx));
  const active = agents.filter((a) => a.status === 'active').length;
  const stats = await signInStats(ctx, t.id, ctx.now() - HOUR);
  const by = (s: string) => users.get(s) ?? 0;
  return {
    tenant: settingsOf(t),
    pta: {
      enabled: t.ptaEnabled,
      canEnable: active > 0,
      refusal: active > 0 ? null : 'No agent is active: install and start an agent first.',
    },
    counts: {
      users: by('cloud') + by('synced'),
      cloudUsers: by('cloud'),
      syncedUsers: by('synced'),
      agents: agents.length,
      activeAgents: active,
      signInsLastHour: stats.reduce((n, s) => n + Number(s.total), 0),
      failuresLastHour: stats.reduce((n, s) => n + Number(s.failures ?? 0), 0),
    },
    sync: syncHealthOut(await syncHealth(ctx.db, t.id, ctx.now())),
  };
};

const settingsRoute = ({ ctx }: AdminDeps): RouteDef =>
  route({
    method: 'GET',
    path: '/settings',
    summary: 'Sign-in settings and smart lockout, with warnings against the directory policy',
    permission: 'read',
    response: TenantSettingsOut,
    handler: async ({ caller }) => settingsOf(await getTenant(ctx.db, caller.tenantId)),
  });

const patchSettingsRoute = (deps: AdminDeps): RouteDef =>
  route({
    method: 'PATCH',
    path: '/settings',
    summary:
      "Change sign-in settings (turning PTA on is refused while no agent is active; a lockout looser than the directory's, with lockout_weaker_than_directory)",
    permission: 'hybrid',
    body: PatchSettings,
    response: TenantSettingsOut,
    handler: async ({ caller, body }) => {
      const { ctx } = deps;
      const activeAgents = await countActiveAgents(ctx.db, caller.tenantId, liveness(ctx));
      const t = await updateSettings(ctx.db, caller.tenantId, body, { activeAgents });
      deps.authenticator?.invalidate?.(caller.tenantId);
      await caller.audit('settings.update', caller.tenantId, body);
      return settingsOf(t);
    },
  });

const agentsRoute = (deps: AdminDeps): RouteDef =>
  route({
    method: 'GET',
    path: '/agents',
    summary: 'Pass-through authentication agents with status and last hour of sign-ins',
    permission: 'read',
    response: z.array(AgentOut),
    handler: async ({ caller }) => agentsOf(deps, caller.tenantId),
  });

const agentsOf = async ({ ctx, gateway }: AdminDeps, tenantId: string) => {
  const agents = await listAgents(ctx.db, tenantId, liveness(ctx));
  const stats = await signInStats(ctx, tenantId, ctx.now() - HOUR);
  const live = new Set((gateway?.connections() ?? []).filter((c) => c.ready).map((c) => c.agentId));
  return agents.map((a) => {
    const s = stats.find((x) => x.agent_id === a.id);
    return {
      id: a.id,
      machineName: a.hostname,
      externalIp: a.externalIp,
      version: a.version,
      status: a.status,
      connected: live.has(a.id),
      lastSeenAt: a.lastSeenAt,
      certNotAfter: a.certNotAfter,
      createdAt: a.createdAt,
      signInsLastHour: Number(s?.total ?? 0),
      failuresLastHour: Number(s?.failures ?? 0),
    };
  });
};

const deleteAgentRoute = (deps: AdminDeps): RouteDef =>
  route({
    method: 'DELETE',
    path: '/agents/:agentId',
    summary:
      'Delete an agent: its certificate is refused and its connections are closed, on every node, before this answers',
    permission: 'hybrid',
    params: AgentId,
    response: z.object({ deleted: z.string(), connectionsClosed: z.number() }),
    handler: async ({ caller, params }) => {
      const { ctx, gateway } = deps;
      await deleteAgent(ctx.db, caller.tenantId, params.agentId, ctx.now());
      // Every node holding the agent has closed it when this resolves.
      const r = await gateway?.revokeDeleted({ tenantId: caller.tenantId, agentId: params.agentId });
      const closed = r?.closed ?? 0;
      await caller.audit('agent.delete', params.agentId, { connectionsClosed: closed });
      return { deleted: params.agentId, connectionsClosed: closed };
    },
  });

const registrationTokenRoute = ({ ctx }: AdminDeps): RouteDef =>
  route({
    method: 'POST',
    path: '/registration-tokens',
    summary: 'A one-time agent registration token and the commands to install the agent',
    permission: 'hybrid',
    body: z.object({ ttlS: z.number().int().min(30).max(86_400).optional() }).strict(),
    response: z.object({
      token: z.string(),
      expiresAt: z.number(),
      cloudUrl: z.string(),
      caPem: z.string(),
      caFingerprint: z.string(),
      commands: z.object({
        ca: z.string(),
        register: z.string(),
        configure: z.string(),
        service: z.string(),
        unit: z.string(),
        all: z.string(),
      }),
    }),
    handler: async ({ caller, body }) => {
      const ttl = body.ttlS ?? ctx.config.registrationTokenTtlS;
      const t = await createRegistrationToken(ctx.db, caller.tenantId, caller.actor.name, ttl, ctx.now());
      await caller.audit('registration_token.create', undefined, { expiresAt: t.expiresAt });
      const caPem = ctx.tls.caCert;
      return {
        ...t,
        cloudUrl: ctx.config.publicUrl,
        caPem,
        caFingerprint: certFingerprint(caPem),
        commands: installCommands({
          publicUrl: ctx.config.publicUrl,
          tenantId: caller.tenantId,
          token: t.token,
          caPem,
        }),
      };
    },
  });

const agentPackageRoute = ({ ctx }: AdminDeps): RouteDef =>
  route({
    method: 'GET',
    path: '/agent-package',
    summary: 'Download the agent: one JavaScript file that Node 22+ runs on a Linux server',
    permission: 'hybrid',
    produces: 'text/javascript',
    handler: async ({ caller, reply }) => {
      const p = await agentPackage(ctx.log);
      await caller.audit('agent_package.download', p.file, { version: p.version, sha256: p.sha256 });
      return reply
        .header('content-type', 'text/javascript; charset=utf-8')
        .header('content-disposition', `attachment; filename="${p.file}"`)
        .header('x-content-sha256', p.sha256)
        .header('x-agent-version', p.version)
        .send(Buffer.from(p.bytes));
    },
  });

const syncRoute = (deps: AdminDeps): RouteDef =>
  route({
    method: 'POST',
    path: '/sync',
    summary:
      'Ask a connected agent for a directory sync now (mode=full, the default, or delta); with wait=S, answer with what the run did once it ends (or its progress after S seconds). Poll GET /sync/runs/{runId} otherwise',
    permission: 'hybrid',
    query: z.object({
      wait: z.coerce.number().int().min(0).max(120).default(0),
      /** delta: only the changes since the agent's mark (the agent runs a full sync when it has none). */
      mode: z.enum(['full', 'delta']).default('full'),
    }),
    response: z.object({ agentId: z.string(), runId: z.string(), run: SyncRunOut.nullable() }),
    handler: async ({ caller, query }) => {
      const { ctx, gateway } = deps;
      const runId = randomUUID();
      const agentId = gateway?.requestSync(caller.tenantId, runId, query.mode) ?? null;
      if (!agentId) throw new GatehouseError('no_active_agent', { tenant: caller.tenantId });
      await caller.audit('sync.request', agentId, { runId, mode: query.mode });
      // An agent already running a sync finishes that one instead: the run never starts here.
      const run = query.wait > 0 ? await waitForRun(ctx, caller.tenantId, runId, query.wait * 1000) : null;
      return { agentId, runId, run: run ? syncRunOut(run) : null };
    },
  });
