/**
 * The operator CLI's group and sync commands: synced groups, a client's groups claim, and the
 * directory sync runs. Changes write an audit row with actor "operator".
 */
import { z } from 'zod';
import { audit } from '../store/audit.ts';
import { setClientGroups } from '../store/clients.ts';
import { listGroups } from '../store/groups.ts';
import { listSyncRuns, syncHealth } from '../store/sync-runs.ts';
import { getTenant } from '../store/tenants.ts';
import { type Command, command, count, iso, many, OPERATOR, str, table, tenant } from './shared.ts';

export const groupCommands: Record<string, Command> = {
  'groups list': command({
    summary: 'the groups synced from the directory, with member counts',
    usage: '--tenant T [--search S] [--limit N]',
    options: { tenant: str, search: str, limit: str },
    schema: z.object({
      tenant,
      search: z.string().max(256).optional(),
      limit: count.max(1000).default(100),
    }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const { groups } = await listGroups(env.db, a.tenant, { search: a.search, limit: a.limit });
      return {
        json: groups,
        text: table(
          groups.map((g) => ({
            id: g.id,
            name: g.name,
            on_prem: g.onPremName,
            type: g.security ? 'security' : 'distribution',
            members: g.members,
            sid: g.onPremSid,
          })),
        ),
      };
    },
  }),

  'sync runs': command({
    summary: 'the directory sync runs, newest first, with what each did',
    usage: '--tenant T [--limit N]',
    options: { tenant: str, limit: str },
    schema: z.object({ tenant, limit: count.max(500).default(20) }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const runs = await listSyncRuns(env.db, a.tenant, { limit: a.limit }, env.now());
      return {
        json: runs,
        text: table(
          runs.map((r) => ({
            run: r.id,
            mode: r.mode,
            status: r.status,
            started: iso(r.startedAt),
            finished: iso(r.finishedAt),
            pages: r.totalPages ? `${r.pages}/${r.totalPages}` : r.pages,
            users: `+${r.counts.usersAdded} ~${r.counts.usersUpdated} -${r.counts.usersDeleted} (${r.counts.usersSeen})`,
            groups: `+${r.counts.groupsAdded} ~${r.counts.groupsUpdated} -${r.counts.groupsDeleted} (${r.counts.groupsSeen})`,
            skipped: r.counts.skipped,
            agent: r.agentId,
            dc: r.server,
            error: r.error,
          })),
        ),
      };
    },
  }),

  'sync status': command({
    summary:
      'whether directory sync is healthy (exit 1 when it failed, stalled, is overdue or held deletions back)',
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const h = await syncHealth(env.db, a.tenant, env.now());
      const r = h.lastRun;
      return {
        json: h,
        text: [
          `sync: ${h.state}: ${h.message}`,
          `last run: ${r ? `${r.mode} ${r.status}, started ${iso(r.startedAt)}` : 'none'}`,
          `last success: ${iso(h.lastSuccessAt)} (overdue after ${h.overdueAfterMinutes} minutes)`,
        ].join('\n'),
        ...(h.problem ? { exitCode: 1 } : {}),
      };
    },
  }),

  'client set-groups': command({
    summary: "which groups an application's tokens carry, and in what form",
    usage:
      '--tenant T --client C --include none|all|security|assigned [--format id|netbios|name] [--limit N] [--assign GROUP_ID]...',
    options: { tenant: str, client: str, include: str, format: str, limit: str, assign: many },
    schema: z.object({
      tenant,
      client: z.string({ error: 'is required' }).min(1).max(128),
      include: z.enum(['none', 'all', 'security', 'assigned'], { error: 'none, all, security or assigned' }),
      format: z.enum(['id', 'netbios', 'name']).default('id'),
      limit: count.max(1000).default(200),
      assign: z.array(z.string().min(1).max(128)).max(1000).default([]),
    }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const setting = await setClientGroups(env.db, a.tenant, a.client, {
        include: a.include,
        format: a.format,
        limit: a.limit,
        assigned: a.assign,
      });
      await audit(
        env.db,
        {
          tenantId: a.tenant,
          actor: OPERATOR,
          action: 'client.set_groups',
          target: a.client,
          detail: setting,
        },
        env.now(),
      );
      return {
        json: setting,
        text: `client ${a.client}: groups claim ${setting.include} as ${setting.format}, overage past ${setting.limit}${setting.assigned.length ? `, ${setting.assigned.length} assigned` : ''}`,
      };
    },
  }),
};
