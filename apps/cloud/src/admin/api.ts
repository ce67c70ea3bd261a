/**
 * The admin REST API's frame: one table of routes (method, path, zod schemas, permission, handler)
 * that both registers the fastify routes and generates the OpenAPI document, so what is documented
 * is exactly what is validated. Callers present a bearer access token issued by the tenant's own
 * OIDC provider: a user's, to the admin center client (roles from the user's directory entry), or
 * a service principal's, by client_credentials without a resource indicator (roles from the app's
 * registration), so scripts and CI automate the API with the tenant's own provider.
 */
import { GatehouseError, TenantId } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { CloudContext } from '../context.ts';
import { accessTokenTenant } from '../oidc/adapter.ts';
import { ADMIN_CLIENT_ID } from '../oidc/admin-client.ts';
import type { Oidc } from '../oidc/index.ts';
import { audit } from '../store/audit.ts';
import { getApp } from '../store/clients.ts';
import { getTenant } from '../store/tenants.ts';
import { getUser, type User } from '../store/users.ts';
import { parse } from '../store/util.ts';

/** read: every admin role; hybrid: agents, sign-in settings, lockout, sync; users: unlock and
 * reset passwords; global: everything else (domains). */
export type Permission = 'read' | 'hybrid' | 'users' | 'global';

const GRANTS: Record<string, readonly Permission[]> = {
  global_admin: ['read', 'hybrid', 'users', 'global'],
  hybrid_identity_admin: ['read', 'hybrid'],
  user_admin: ['read', 'users'],
  reader: ['read'],
};

export const permissionsOf = (roles: readonly string[]): Set<Permission> =>
  new Set(roles.flatMap((r) => GRANTS[r] ?? []));

/** Who acts: a user, or an application acting as itself (a service principal). */
export interface Actor {
  kind: 'user' | 'service_principal';
  /** The user's id, or the app's client id. */
  id: string;
  /** What the audit log records: the user's UPN, or "APP NAME (app CLIENT_ID)". */
  name: string;
  /** The user's admin roles, or the roles assigned to the app. */
  roles: string[];
}

export interface Caller {
  tenantId: string;
  actor: Actor;
  /** The signed-in user; undefined for a service principal. */
  user?: User;
  permissions: Set<Permission>;
  /** Set when the user called a `self` route about themselves with an application's token. */
  self?: { clientId: string };
  /** Writes an audit row with the actor's name. */
  audit(action: string, target?: string, detail?: unknown): Promise<void>;
}

export interface Call<P, Q, B> {
  caller: Caller;
  params: P;
  query: Q;
  body: B;
  req: FastifyRequest;
  reply: FastifyReply;
}

export interface RouteDef<P = unknown, Q = unknown, B = unknown> {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Relative to /:tenantId/api/v1, fastify syntax (`/agents/:agentId`). */
  path: string;
  summary: string;
  permission: Permission;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  /** Documented 200 body (JSON); omitted for non-JSON answers. */
  response?: z.ZodType;
  /** Content type of a non-JSON answer (documented instead of `response`). */
  produces?: string;
  /**
   * A path parameter naming a user: that user may call the route about themselves with an access
   * token of any application of the tenant (the groups overage endpoint), without an admin role.
   */
  self?: string;
  handler(call: Call<P, Q, B>): Promise<unknown>;
}

/** Keeps each route's handler typed by its own schemas. */
export const route = <P, Q, B>(def: RouteDef<P, Q, B>): RouteDef => def as unknown as RouteDef;

export const BASE = '/:tenantId/api/v1';

const bearer = (req: FastifyRequest): string | null => {
  const h = req.headers.authorization;
  const m = typeof h === 'string' ? /^Bearer\s+([A-Za-z0-9._~+/-]+=*)$/i.exec(h.trim()) : null;
  return m?.[1] ?? null;
};

/**
 * The caller behind the token, for this tenant only. A token the tenant's provider does not know
 * is 401, except one minted by another tenant's provider: that caller is authenticated, just not
 * here, so 403 (and nothing of this tenant is read).
 */
export const authenticate = async (
  ctx: CloudContext,
  oidc: Oidc,
  tenantId: string,
  req: FastifyRequest,
): Promise<Caller> => {
  const t = await oidc.forTenant(tenantId);
  if (!t) throw new GatehouseError('not_found', { tenant: tenantId });
  const token = bearer(req);
  if (!token) throw new GatehouseError('unauthorized', { reason: 'bearer token required' });
  const at = await t.provider.AccessToken.find(token).catch(() => undefined);
  if (!at) {
    const sp = await servicePrincipal(ctx, t.provider, tenantId, token);
    if (sp) return sp;
  }
  if (!at || at.clientId !== ADMIN_CLIENT_ID || !at.accountId) {
    const elsewhere = await accessTokenTenant(ctx.db, ctx.secrets, token, ctx.now());
    if (elsewhere && elsewhere !== tenantId)
      throw new GatehouseError('forbidden', { reason: 'the token belongs to another tenant' });
    throw new GatehouseError('unauthorized', { reason: 'the token is not valid' });
  }
  const user = await getUser(ctx.db, tenantId, at.accountId);
  if (!user?.enabled) throw new GatehouseError('unauthorized', { reason: 'the user is not valid' });
  const permissions = permissionsOf(user.roles);
  if (!permissions.has('read')) throw new GatehouseError('forbidden', { reason: 'no administrator role' });
  return callerOf(
    ctx,
    tenantId,
    { kind: 'user', id: user.id, name: user.upn, roles: user.roles },
    permissions,
    user,
  );
};

const callerOf = (
  ctx: CloudContext,
  tenantId: string,
  actor: Actor,
  permissions: Set<Permission>,
  user?: User,
): Caller => ({
  tenantId,
  actor,
  ...(user ? { user } : {}),
  permissions,
  audit: (action, target, detail) =>
    audit(ctx.db, { tenantId, actor: actor.name, action, target, detail }, ctx.now()),
});

type TenantProvider = NonNullable<Awaited<ReturnType<Oidc['forTenant']>>>['provider'];

/**
 * A client_credentials token of this tenant's provider, issued without a resource indicator: its
 * audience is the tenant itself, as for the admin center's tokens. A token for a registered API
 * (RFC 8707 resource) is that API's, never the admin API's. The app is read on every call, so
 * removing its roles or deleting it takes effect at once, whatever tokens it still holds.
 */
const servicePrincipal = async (
  ctx: CloudContext,
  provider: TenantProvider,
  tenantId: string,
  token: string,
): Promise<Caller | null> => {
  const cc = await provider.ClientCredentials.find(token).catch(() => undefined);
  if (!cc?.clientId) return null;
  if (cc.aud !== undefined)
    throw new GatehouseError('unauthorized', { reason: 'the token is for another resource' });
  const app = await getApp(ctx.db, tenantId, cc.clientId).catch(() => null);
  if (!app) throw new GatehouseError('unauthorized', { reason: 'the application is not valid' });
  const permissions = permissionsOf(app.adminRoles);
  if (!permissions.has('read')) throw new GatehouseError('forbidden', { reason: 'no administrator role' });
  const actor: Actor = {
    kind: 'service_principal',
    id: app.clientId,
    name: `${app.name} (app ${app.clientId})`,
    roles: app.adminRoles,
  };
  return callerOf(ctx, tenantId, actor, permissions);
};

/** The user behind an application's access token, when they ask about themselves; else the admin. */
const authenticateSelf = async (
  ctx: CloudContext,
  oidc: Oidc,
  tenantId: string,
  req: FastifyRequest,
  subject: unknown,
): Promise<Caller> => {
  const t = await oidc.forTenant(tenantId);
  const token = bearer(req);
  const at = t && token ? await t.provider.AccessToken.find(token).catch(() => undefined) : undefined;
  if (!at?.accountId || at.clientId === ADMIN_CLIENT_ID || at.accountId !== subject)
    return authenticate(ctx, oidc, tenantId, req);
  const user = await getUser(ctx.db, tenantId, at.accountId);
  if (!user?.enabled) throw new GatehouseError('unauthorized', { reason: 'the user is not valid' });
  return {
    ...callerOf(
      ctx,
      tenantId,
      { kind: 'user', id: user.id, name: user.upn, roles: user.roles },
      new Set(),
      user,
    ),
    self: { clientId: String(at.clientId) },
  };
};

const TenantParam = z.object({ tenantId: TenantId });

export const registerApiRoutes = (
  app: FastifyInstance,
  ctx: CloudContext,
  oidc: Oidc,
  routes: readonly RouteDef[],
) => {
  app.register(async (scope) => {
    // JSON only; other bodies are refused by fastify's own parser (415 -> validation_failed).
    scope.addHook('onSend', async (_req, reply, payload) => {
      reply.header('cache-control', 'no-store');
      return payload;
    });
    for (const r of routes) {
      scope.route({
        method: r.method,
        url: `${BASE}${r.path}`,
        handler: async (req, reply) => {
          const { tenantId } = parse(TenantParam, req.params);
          const caller = r.self
            ? await authenticateSelf(
                ctx,
                oidc,
                tenantId,
                req,
                (req.params as Record<string, unknown>)[r.self],
              )
            : await authenticate(ctx, oidc, tenantId, req);
          if (!caller.self && !caller.permissions.has(r.permission))
            throw new GatehouseError('forbidden', { reason: `needs the ${r.permission} permission` });
          await getTenant(ctx.db, tenantId);
          const { tenantId: _, ...rest } = req.params as Record<string, unknown>;
          const call = {
            caller,
            params: r.params ? parse(r.params, rest) : rest,
            query: r.query ? parse(r.query, req.query ?? {}) : {},
            body: r.body ? parse(r.body, req.body ?? {}) : undefined,
            req,
            reply,
          };
          const out = await r.handler(call as Call<unknown, unknown, unknown>);
          if (reply.sent) return reply;
          return out;
        },
      });
    }
  });
};
