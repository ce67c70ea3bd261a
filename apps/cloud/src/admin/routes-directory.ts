/**
 * Admin API: domains, users (search, unlock, reset a cloud-only password), sign-in logs and the
 * audit log. Passwords arrive in a request body only, are hashed at once, and never reach an
 * audit row or a log line.
 */
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { createSmartLockout } from '../lockout/smart-lockout.ts';
import { listAudit } from '../store/audit.ts';
import { addDomain, type Domain, listDomains, setDomainKind, verifyDomain } from '../store/domains.ts';
import { lockedUntilOf } from '../store/lockout.ts';
import { listSignIns } from '../store/sign-ins.ts';
import { getUser, listUsers, Password, setCloudPassword } from '../store/users.ts';
import { DomainName } from '../store/util.ts';
import { type RouteDef, route } from './api.ts';
import type { AdminDeps } from './deps.ts';

const DomainOut = z.object({
  name: z.string(),
  kind: z.enum(['managed', 'federated']),
  verified: z.boolean(),
  txtRecord: z.string(),
  federationUrl: z.string().nullable(),
  createdAt: z.number(),
});
const domainOut = (d: Domain): z.infer<typeof DomainOut> => ({
  name: d.name,
  kind: d.kind,
  verified: d.verified,
  txtRecord: d.txtRecord,
  federationUrl: d.federationUrl,
  createdAt: d.createdAt,
});
const DomainParam = z.object({ name: DomainName });

const UserOut = z.object({
  id: z.string(),
  upn: z.string(),
  source: z.enum(['cloud', 'synced']),
  displayName: z.string().nullable(),
  mail: z.string().nullable(),
  enabled: z.boolean(),
  roles: z.array(z.string()),
  syncedAt: z.number().nullable(),
  lockedUntil: z.number().nullable(),
});
const UserParam = z.object({ userId: z.string().min(1).max(128) });
const Int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const SignInOut = z.object({
  id: z.number(),
  at: z.number(),
  requestId: z.string(),
  upn: z.string(),
  method: z.string(),
  outcome: z.string(),
  success: z.boolean(),
  clientId: z.string().nullable(),
  clientIp: z.string().nullable(),
  agentId: z.string().nullable(),
  server: z.string().nullable(),
  directoryCode: z.string().nullable(),
  agentMs: z.number().nullable(),
  directoryMs: z.number().nullable(),
  totalMs: z.number(),
});

export const directoryRoutes = (deps: AdminDeps): RouteDef[] => {
  const { ctx } = deps;
  const lockout = () => createSmartLockout(ctx.db, ctx.secrets, ctx.now);
  const userOf = async (tenantId: string, userId: string) => {
    const u = await getUser(ctx.db, tenantId, userId);
    if (!u) throw new GatehouseError('not_found', { user: userId });
    return u;
  };
  return [
    route({
      method: 'GET',
      path: '/domains',
      summary: 'Domains of the tenant, with the TXT record that proves ownership',
      permission: 'read',
      response: z.array(DomainOut),
      handler: async ({ caller }) => (await listDomains(ctx.db, caller.tenantId)).map((d) => domainOut(d)),
    }),
    route({
      method: 'POST',
      path: '/domains',
      summary: 'Add a domain (unverified, managed); publish its TXT record, then verify it',
      permission: 'global',
      body: z.object({ name: DomainName }).strict(),
      response: DomainOut,
      handler: async ({ caller, body }) => {
        const d = await addDomain(ctx.db, caller.tenantId, body.name, ctx.now());
        await caller.audit('domain.add', d.name);
        return domainOut(d);
      },
    }),
    route({
      method: 'POST',
      path: '/domains/:name/verify',
      summary: 'Verify a domain by its DNS TXT record',
      permission: 'global',
      params: DomainParam,
      response: DomainOut,
      handler: async ({ caller, params }) => {
        const d = await verifyDomain(ctx.db, caller.tenantId, params.name);
        await caller.audit('domain.verify', d.name);
        return domainOut(d);
      },
    }),
    route({
      method: 'PATCH',
      path: '/domains/:name',
      summary: 'Make a domain managed (pass-through) or federated (its own identity provider)',
      permission: 'global',
      params: DomainParam,
      body: z.discriminatedUnion('kind', [
        z.object({ kind: z.literal('managed') }).strict(),
        z.object({ kind: z.literal('federated'), federationUrl: z.url({ protocol: /^https$/ }) }).strict(),
      ]),
      response: DomainOut,
      handler: async ({ caller, params, body }) => {
        const d = await setDomainKind(ctx.db, caller.tenantId, params.name, body);
        deps.authenticator?.invalidate?.(caller.tenantId);
        await caller.audit('domain.set_kind', d.name, { kind: d.kind, federationUrl: d.federationUrl });
        return domainOut(d);
      },
    }),
    route({
      method: 'GET',
      path: '/users',
      summary: 'Cloud-only and synced users, searched by the start of UPN, name or mail',
      permission: 'read',
      query: z.object({
        search: z.string().trim().max(256).optional(),
        limit: Int(1, 500).default(50),
        cursor: z.string().max(256).optional(),
      }),
      response: z.object({ users: z.array(UserOut), nextCursor: z.string().nullable() }),
      handler: async ({ caller, query }) => {
        const page = await listUsers(ctx.db, caller.tenantId, query);
        const locks = await lockedUntilOf(
          ctx.db,
          caller.tenantId,
          page.users.map((u) => u.id),
        );
        const now = ctx.now();
        return {
          users: page.users.map((u) => {
            const until = locks.get(u.id) ?? 0;
            return {
              id: u.id,
              upn: u.upn,
              source: u.source,
              displayName: u.displayName,
              mail: u.mail,
              enabled: u.enabled,
              roles: u.roles,
              syncedAt: u.syncedAt,
              lockedUntil: until > now ? until : null,
            };
          }),
          nextCursor: page.nextCursor,
        };
      },
    }),
    route({
      method: 'POST',
      path: '/users/:userId/unlock',
      summary: 'Clear smart lockout for a user (every location)',
      permission: 'users',
      params: UserParam,
      response: z.object({ upn: z.string(), unlocked: z.literal(true) }),
      handler: async ({ caller, params }) => {
        const u = await userOf(caller.tenantId, params.userId);
        await lockout().unlock(caller.tenantId, u.id);
        await caller.audit('user.unlock', u.upn);
        return { upn: u.upn, unlocked: true as const };
      },
    }),
    route({
      method: 'POST',
      path: '/users/:userId/password',
      summary: "Reset a cloud-only user's password (synced users change theirs on premises)",
      permission: 'users',
      params: UserParam,
      body: z.object({ password: Password }).strict(),
      response: z.object({ upn: z.string(), reset: z.literal(true) }),
      handler: async ({ caller, params, body }) => {
        const u = await userOf(caller.tenantId, params.userId);
        // A global administrator's password is only reset by a global administrator.
        if (u.roles.length > 0 && !caller.permissions.has('global'))
          throw new GatehouseError('forbidden', { reason: 'the user is an administrator' });
        await setCloudPassword(ctx.db, caller.tenantId, u.id, body.password, ctx.now());
        await caller.audit('user.reset_password', u.upn);
        return { upn: u.upn, reset: true as const };
      },
    }),
    route({
      method: 'GET',
      path: '/signins',
      summary: 'Sign-in log, newest first, filtered by user, outcome, time range and agent',
      permission: 'read',
      query: z.object({
        upn: z.string().trim().max(256).optional(),
        outcome: z.string().max(64).optional(),
        result: z.enum(['success', 'failure']).optional(),
        agentId: z.string().max(128).optional(),
        from: Int(0, Number.MAX_SAFE_INTEGER).optional(),
        to: Int(0, Number.MAX_SAFE_INTEGER).optional(),
        beforeId: Int(1, Number.MAX_SAFE_INTEGER).optional(),
        limit: Int(1, 500).default(100),
      }),
      response: z.array(SignInOut),
      handler: async ({ caller, query: f }) =>
        (await listSignIns(ctx.db, caller.tenantId, f)).map(({ userId: _, ...e }) => ({
          ...e,
          success: e.outcome === 'success',
        })),
    }),
    route({
      method: 'GET',
      path: '/audit',
      summary: 'Audit log of the tenant, newest first',
      permission: 'read',
      query: z.object({
        limit: Int(1, 1000).default(100),
        beforeId: Int(1, Number.MAX_SAFE_INTEGER).optional(),
      }),
      response: z.array(
        z.object({
          id: z.number(),
          at: z.number(),
          actor: z.string(),
          action: z.string(),
          target: z.string().nullable(),
          detail: z.unknown(),
        }),
      ),
      handler: async ({ caller, query }) =>
        (await listAudit(ctx.db, caller.tenantId, query)).map(({ tenantId: _, ...e }) => e),
    }),
  ];
};
