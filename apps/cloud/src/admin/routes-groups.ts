/**
 * Admin API: synced groups, a user's groups (also the groups overage endpoint an application
 * follows with the user's own access token) and the directory sync runs.
 */
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import type { CloudContext } from '../context.ts';
import { claimValue, groupsForClient, settingOf } from '../oidc/groups-claim.ts';
import { getClient } from '../store/clients.ts';
import { type Group, groupsOfUser, listGroups } from '../store/groups.ts';
import { getSyncRun, listSyncRuns, type SyncHealth, type SyncRun, syncHealth } from '../store/sync-runs.ts';
import { getUser } from '../store/users.ts';
import { type RouteDef, route } from './api.ts';
import type { AdminDeps } from './deps.ts';

const Int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** Named like Microsoft Graph's group resource, so code written for Entra's overage reads it. */
export const GroupOut = z.object({
  id: z.string(),
  displayName: z.string(),
  onPremisesSamAccountName: z.string().nullable(),
  onPremisesSecurityIdentifier: z.string().nullable(),
  onPremisesDn: z.string(),
  securityEnabled: z.boolean(),
  description: z.string().nullable(),
  syncedAt: z.number(),
});
export const groupOut = (g: Group): z.infer<typeof GroupOut> => ({
  id: g.id,
  displayName: g.name,
  onPremisesSamAccountName: g.onPremName,
  onPremisesSecurityIdentifier: g.onPremSid,
  onPremisesDn: g.dn,
  securityEnabled: g.security,
  description: g.description,
  syncedAt: g.syncedAt,
});

const Count = z.number().int();
export const SyncRunOut = z.object({
  id: z.string(),
  agentId: z.string(),
  server: z.string().nullable(),
  mode: z.enum(['full', 'delta']),
  status: z.enum(['running', 'stalled', 'succeeded', 'guarded', 'failed']),
  startedAt: z.number(),
  updatedAt: z.number(),
  finishedAt: z.number().nullable(),
  pages: Count,
  totalPages: Count.nullable(),
  counts: z.object({
    usersSeen: Count,
    usersAdded: Count,
    usersUpdated: Count,
    usersDeleted: Count,
    groupsSeen: Count,
    groupsAdded: Count,
    groupsUpdated: Count,
    groupsDeleted: Count,
    membershipsChanged: Count,
    skipped: Count,
  }),
  error: z.string().nullable(),
});
export const syncRunOut = ({ tenantId: _, ...r }: SyncRun): z.infer<typeof SyncRunOut> => r;

export const SyncHealthOut = z.object({
  state: z.enum(['ok', 'running', 'never', 'guarded', 'failed', 'stalled', 'overdue']),
  problem: z.boolean(),
  message: z.string(),
  lastRun: SyncRunOut.nullable(),
  lastSuccessAt: z.number().nullable(),
  intervalMinutes: z.number(),
  overdueAfterMinutes: z.number(),
});
export const syncHealthOut = (h: SyncHealth): z.infer<typeof SyncHealthOut> => ({
  ...h,
  lastRun: h.lastRun ? syncRunOut(h.lastRun) : null,
});

/** Polls the run's record until it has ended or `ms` have passed (works whichever node applied it). */
export const waitForRun = async (
  ctx: CloudContext,
  tenantId: string,
  runId: string,
  ms: number,
): Promise<SyncRun | null> => {
  const until = Date.now() + ms;
  for (;;) {
    const run = await getSyncRun(ctx.db, tenantId, runId, ctx.now());
    if ((run && run.status !== 'running') || Date.now() >= until) return run;
    await new Promise((r) => setTimeout(r, 200));
  }
};

export const groupRoutes = (deps: AdminDeps): RouteDef[] => {
  const { ctx } = deps;
  return [
    route({
      method: 'GET',
      path: '/groups',
      summary: 'Groups synced from on premises, searched by the start of their name, with member counts',
      permission: 'read',
      query: z.object({
        search: z.string().trim().max(256).optional(),
        limit: Int(1, 500).default(100),
        cursor: z.string().max(512).optional(),
      }),
      response: z.object({
        groups: z.array(GroupOut.extend({ members: Count })),
        nextCursor: z.string().nullable(),
      }),
      handler: async ({ caller, query }) => {
        const page = await listGroups(ctx.db, caller.tenantId, query).catch((err: unknown) => {
          if (err instanceof SyntaxError)
            throw new GatehouseError('validation_failed', { cursor: 'invalid' });
          throw err;
        });
        return {
          groups: page.groups.map((g) => ({ ...groupOut(g), members: g.members })),
          nextCursor: page.nextCursor,
        };
      },
    }),
    route({
      method: 'GET',
      path: '/users/:userId/groups',
      summary:
        "A user's groups, nested membership included. Also the groups overage endpoint: the user may call it with an application's access token, and sees the groups that application's groups claim would hold",
      permission: 'read',
      self: 'userId',
      params: z.object({ userId: z.string().min(1).max(128) }),
      response: z.object({
        value: z.array(GroupOut),
        /** The values the groups claim would have held, in the application's format (self only). */
        groups: z.array(z.string()).optional(),
      }),
      handler: async ({ caller, params }) => {
        const user = await getUser(ctx.db, caller.tenantId, params.userId);
        if (!user) throw new GatehouseError('not_found', { user: params.userId });
        if (!caller.self)
          return { value: (await groupsOfUser(ctx.db, caller.tenantId, user.id)).map(groupOut) };
        const client = await getClient(ctx.db, caller.self.clientId);
        const setting = client?.tenantId === caller.tenantId ? settingOf(client.metadata) : null;
        if (!setting)
          throw new GatehouseError('forbidden', { reason: 'the application does not receive groups' });
        const groups = await groupsForClient(ctx.db, caller.tenantId, user.id, setting);
        return { value: groups.map(groupOut), groups: groups.map((g) => claimValue(g, setting.format)) };
      },
    }),
    route({
      method: 'GET',
      path: '/sync/runs',
      summary: 'Directory sync runs, newest first: counts, agent and DC, progress, how each ended',
      permission: 'read',
      query: z.object({ limit: Int(1, 200).default(20), before: Int(0, Number.MAX_SAFE_INTEGER).optional() }),
      response: z.array(SyncRunOut),
      handler: async ({ caller, query }) =>
        (await listSyncRuns(ctx.db, caller.tenantId, query, ctx.now())).map(syncRunOut),
    }),
    route({
      method: 'GET',
      path: '/sync/status',
      summary:
        'Whether directory sync is healthy: the last run failed, a run is stalled, no run succeeded within 3 full-sync intervals, or deletions were held back',
      permission: 'read',
      response: SyncHealthOut,
      handler: async ({ caller }) => syncHealthOut(await syncHealth(ctx.db, caller.tenantId, ctx.now())),
    }),
    route({
      method: 'GET',
      path: '/sync/runs/:runId',
      summary: 'One directory sync run (poll it while it runs: pages so far of total)',
      permission: 'read',
      params: z.object({ runId: z.string().min(1).max(128) }),
      response: SyncRunOut,
      handler: async ({ caller, params }) => {
        const run = await getSyncRun(ctx.db, caller.tenantId, params.runId, ctx.now());
        if (!run) throw new GatehouseError('not_found', { run: params.runId });
        return syncRunOut(run);
      },
    }),
  ];
};
