/**
 * Admin API: APIs (resource servers) with their scopes and the scopes granted to each client, and
 * the tenant's token signing keys with their rotation. Every change writes an audit row.
 */
import { z } from 'zod';
import { keyTimings, maxSignedTokenTtlS } from '../oidc/keys.ts';
import {
  CreateApiInput,
  createApi,
  deleteApi,
  GrantApiInput,
  getApi,
  grantApi,
  listApis,
} from '../store/apis.ts';
import { listSigningKeys, rotateSigningKeys } from '../store/signing-keys.ts';
import { type RouteDef, route } from './api.ts';
import type { AdminDeps } from './deps.ts';

export const ApiOut = z.object({
  id: z.string(),
  name: z.string(),
  identifier: z.string(),
  scopes: z.array(z.string()),
  tokenFormat: z.enum(['jwt', 'opaque']),
  signingAlg: z.enum(['ES256', 'RS256']),
  accessTokenTtlS: z.number().int(),
  introspectionClientId: z.string().nullable(),
  createdAt: z.number(),
  grants: z.array(z.object({ clientId: z.string(), scopes: z.array(z.string()) })),
});

export const SigningKeyOut = z.object({
  kid: z.string(),
  alg: z.enum(['ES256', 'RS256']),
  /** next: published, not signing yet; signing; retiring: published until retiresAt. */
  state: z.enum(['next', 'signing', 'retiring']),
  createdAt: z.number(),
  signsFrom: z.number(),
  retiresAt: z.number().nullable(),
});

const ApiParam = z.object({ apiId: z.string().min(1).max(500) });

export const apiRoutes = (deps: AdminDeps): RouteDef[] => {
  const { ctx } = deps;
  return [
    route({
      method: 'GET',
      path: '/apis',
      summary: 'APIs (resource servers) of the tenant, their scopes and the clients granted them',
      permission: 'read',
      response: z.array(ApiOut),
      handler: async ({ caller }) => listApis(ctx.db, caller.tenantId),
    }),
    route({
      method: 'POST',
      path: '/apis',
      summary: 'Register an API: its identifier (resource indicator), scopes and token format',
      permission: 'global',
      body: CreateApiInput,
      response: ApiOut,
      handler: async ({ caller, body }) => {
        const api = await createApi(ctx.db, caller.tenantId, body, ctx.now());
        await caller.audit('api.create', api.id, { identifier: api.identifier, scopes: api.scopes });
        return api;
      },
    }),
    route({
      method: 'GET',
      path: '/apis/:apiId',
      summary: 'One API, by id or identifier',
      permission: 'read',
      params: ApiParam,
      response: ApiOut,
      handler: async ({ caller, params }) => getApi(ctx.db, caller.tenantId, params.apiId),
    }),
    route({
      method: 'DELETE',
      path: '/apis/:apiId',
      summary: 'Delete an API and its grants (tokens already issued run out by their expiry)',
      permission: 'global',
      params: ApiParam,
      response: z.object({ deleted: z.string() }),
      handler: async ({ caller, params }) => {
        const api = await deleteApi(ctx.db, caller.tenantId, params.apiId);
        await caller.audit('api.delete', api.id, { identifier: api.identifier });
        return { deleted: api.id };
      },
    }),
    route({
      method: 'POST',
      path: '/apis/:apiId/grants',
      summary: "Set the scopes a client is granted on an API (an empty list revokes the client's grant)",
      permission: 'global',
      params: ApiParam,
      body: GrantApiInput,
      response: ApiOut,
      handler: async ({ caller, params, body }) => {
        const api = await grantApi(ctx.db, caller.tenantId, params.apiId, body, ctx.now());
        await caller.audit('api.grant', api.id, { clientId: body.clientId, scopes: body.scopes });
        return api;
      },
    }),
    route({
      method: 'GET',
      path: '/keys',
      summary: 'Token signing keys: the one signing per algorithm, the next, and those retiring',
      permission: 'read',
      response: z.array(SigningKeyOut),
      handler: async ({ caller }) => listSigningKeys(ctx, caller.tenantId),
    }),
    route({
      method: 'POST',
      path: '/keys/rotate',
      summary: 'Rotate the signing keys: new keys are published now and sign after the publish delay',
      permission: 'global',
      response: z.array(SigningKeyOut),
      handler: async ({ caller }) => {
        const keys = await rotateSigningKeys(ctx, caller.tenantId, {
          publishDelayS: keyTimings(ctx.config).publishDelayS,
          maxTokenTtlS: await maxSignedTokenTtlS(ctx.db, caller.tenantId),
        });
        await caller.audit('keys.rotate', caller.tenantId, {
          next: keys.filter((k) => k.state === 'next').map((k) => k.kid),
        });
        return keys;
      },
    }),
  ];
};
