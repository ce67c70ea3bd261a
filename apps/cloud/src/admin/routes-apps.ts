/**
 * Admin API: application registrations (OIDC clients). Create, edit and delete them, rotate a
 * confidential app's secret (shown once, only its SHA-256 kept: store/clients.ts), and assign
 * admin roles to an app, which makes it a service principal of the admin API. Everything here is
 * Global Administrator work, like domains: an app can be given tokens for every user of the tenant,
 * and a service principal can be given any admin role.
 */
import { z } from 'zod';
import {
  type AppView,
  CreateClientInput,
  createClient,
  deleteClient,
  GRANT_TYPES,
  GroupsClaimSetting,
  getApp,
  IdTokenAlg,
  listApps,
  rotateClientSecret,
  UpdateClientInput,
  updateClient,
} from '../store/clients.ts';
import { ROLES } from '../store/users.ts';
import { type RouteDef, route } from './api.ts';
import type { AdminDeps } from './deps.ts';

const AppOut = z.object({
  clientId: z.string(),
  name: z.string(),
  public: z.boolean(),
  grantTypes: z.array(z.enum(GRANT_TYPES)),
  redirectUris: z.array(z.string()),
  postLogoutRedirectUris: z.array(z.string()),
  firstParty: z.boolean(),
  adminRoles: z.array(z.enum(ROLES)),
  groups: GroupsClaimSetting.nullable(),
  idTokenAlg: IdTokenAlg,
  createdAt: z.number(),
});
/** The secret appears in this answer only: it cannot be read again, only replaced. */
const WithSecret = AppOut.extend({ clientSecret: z.string().optional() });
const AppParam = z.object({ clientId: z.string().min(1).max(128) });

/** What the audit row keeps of a change: the fields, never a secret (the app has none in them). */
const changed = (app: AppView) => ({ ...app, groups: app.groups ?? undefined });

export const appRoutes = (deps: AdminDeps): RouteDef[] => {
  const { ctx } = deps;
  return [
    route({
      method: 'GET',
      path: '/apps',
      summary: 'Application registrations of the tenant (OIDC clients), without secrets',
      permission: 'read',
      response: z.array(AppOut),
      handler: async ({ caller }) => listApps(ctx.db, caller.tenantId),
    }),
    route({
      method: 'POST',
      path: '/apps',
      summary:
        'Register an application; a confidential one gets a client secret, returned in this answer only',
      permission: 'global',
      body: CreateClientInput,
      response: WithSecret,
      handler: async ({ caller, body }) => {
        const c = await createClient(ctx.db, caller.tenantId, body, ctx.now());
        const app = await getApp(ctx.db, caller.tenantId, c.clientId);
        await caller.audit('app.create', app.clientId, changed(app));
        return c.clientSecret ? { ...app, clientSecret: c.clientSecret } : app;
      },
    }),
    route({
      method: 'GET',
      path: '/apps/:clientId',
      summary: 'One application registration',
      permission: 'read',
      params: AppParam,
      response: AppOut,
      handler: async ({ caller, params }) => getApp(ctx.db, caller.tenantId, params.clientId),
    }),
    route({
      method: 'PATCH',
      path: '/apps/:clientId',
      summary:
        'Change an application: name, redirect and post-logout redirect URIs, grants, public or confidential (becoming confidential returns a new secret once), consent, admin roles, groups claim, ID token signing algorithm',
      permission: 'global',
      params: AppParam,
      body: UpdateClientInput,
      response: WithSecret,
      handler: async ({ caller, params, body }) => {
        const r = await updateClient(ctx.db, caller.tenantId, params.clientId, body);
        await caller.audit('app.update', params.clientId, {
          changed: Object.keys(body ?? {}),
          ...changed(r.app),
        });
        return r.clientSecret ? { ...r.app, clientSecret: r.clientSecret } : r.app;
      },
    }),
    route({
      method: 'POST',
      path: '/apps/:clientId/secret',
      summary:
        "Replace a confidential application's secret: the new one is returned once, the old one stops working within a second",
      permission: 'global',
      params: AppParam,
      response: z.object({ clientId: z.string(), clientSecret: z.string() }),
      handler: async ({ caller, params }) => {
        const clientSecret = await rotateClientSecret(ctx.db, caller.tenantId, params.clientId);
        await caller.audit('app.secret.rotate', params.clientId);
        return { clientId: params.clientId, clientSecret };
      },
    }),
    route({
      method: 'DELETE',
      path: '/apps/:clientId',
      summary: 'Delete an application: its tokens stop working and it can no longer sign anyone in',
      permission: 'global',
      params: AppParam,
      response: z.object({ deleted: z.string() }),
      handler: async ({ caller, params }) => {
        const app = await getApp(ctx.db, caller.tenantId, params.clientId);
        await deleteClient(ctx.db, caller.tenantId, params.clientId);
        await caller.audit('app.delete', params.clientId, { name: app.name });
        return { deleted: params.clientId };
      },
    }),
  ];
};
