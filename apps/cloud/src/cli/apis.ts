/**
 * The operator CLI's API and signing key commands (parity with the admin API's /apis and /keys).
 * Every change writes an audit row with actor "operator".
 */
import { z } from 'zod';
import { keyTimings, maxSignedTokenTtlS } from '../oidc/keys.ts';
import { createApi, deleteApi, grantApi, listApis } from '../store/apis.ts';
import { audit } from '../store/audit.ts';
import { listSigningKeys, rotateSigningKeys } from '../store/signing-keys.ts';
import { getTenant } from '../store/tenants.ts';
import {
  type CliEnv,
  type Command,
  command,
  count,
  iso,
  many,
  OPERATOR,
  str,
  table,
  tenant,
} from './shared.ts';

const note = (env: CliEnv, tenantId: string, action: string, target: string, detail: unknown) =>
  audit(env.db, { tenantId, actor: OPERATOR, action, target, detail }, env.now());

const keyTable = (keys: Awaited<ReturnType<typeof listSigningKeys>>) =>
  table(
    keys.map((k) => ({
      kid: k.kid,
      alg: k.alg,
      state: k.state,
      signs_from: iso(k.signsFrom),
      retires_at: iso(k.retiresAt),
    })),
  );

export const apiCommands: Record<string, Command> = {
  'api create': command({
    summary: 'register an API (resource server): its identifier, scopes and token format',
    usage:
      '--tenant T --name N --identifier URI [--scope S]... [--token-format jwt|opaque] [--signing-alg ES256|RS256] [--ttl SECONDS] [--introspection-client ID]',
    options: {
      tenant: str,
      name: str,
      identifier: str,
      scope: many,
      'token-format': str,
      'signing-alg': str,
      ttl: str,
      'introspection-client': str,
    },
    schema: z.object({
      tenant,
      name: z.string({ error: 'is required' }).min(1).max(200),
      identifier: z.string({ error: 'is required' }).min(1).max(500),
      scope: z.array(z.string()).default([]),
      'token-format': z.enum(['jwt', 'opaque']).default('jwt'),
      'signing-alg': z.enum(['ES256', 'RS256']).default('ES256'),
      ttl: count.optional(),
      'introspection-client': z.string().min(1).optional(),
    }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const api = await createApi(
        env.db,
        a.tenant,
        {
          name: a.name,
          identifier: a.identifier,
          scopes: a.scope,
          tokenFormat: a['token-format'],
          signingAlg: a['signing-alg'],
          ...(a.ttl ? { accessTokenTtlS: a.ttl } : {}),
          ...(a['introspection-client'] ? { introspectionClientId: a['introspection-client'] } : {}),
        },
        env.now(),
      );
      await note(env, a.tenant, 'api.create', api.id, { identifier: api.identifier, scopes: api.scopes });
      return {
        json: api,
        text: `api: ${api.id}\nidentifier: ${api.identifier}\nscopes: ${api.scopes.join(' ') || '(none)'}`,
      };
    },
  }),

  'api list': command({
    summary: "a tenant's APIs, their scopes and the clients granted them",
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const apis = await listApis(env.db, a.tenant);
      return {
        json: apis,
        text: table(
          apis.map((x) => ({
            id: x.id,
            identifier: x.identifier,
            format: x.tokenFormat,
            scopes: x.scopes.join(' '),
            grants: x.grants.map((g) => `${g.clientId}:${g.scopes.join(',')}`).join(' '),
          })),
        ),
      };
    },
  }),

  'api delete': command({
    summary: 'delete an API and its grants',
    usage: '--tenant T --api ID-OR-IDENTIFIER',
    options: { tenant: str, api: str },
    schema: z.object({ tenant, api: z.string({ error: 'is required' }).min(1) }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const api = await deleteApi(env.db, a.tenant, a.api);
      await note(env, a.tenant, 'api.delete', api.id, { identifier: api.identifier });
      return { json: { deleted: api.id }, text: `deleted ${api.identifier}` };
    },
  }),

  'api grant': command({
    summary: "set the scopes a client is granted on an API (no --scope revokes the client's grant)",
    usage: '--tenant T --api ID-OR-IDENTIFIER --client ID [--scope S]...',
    options: { tenant: str, api: str, client: str, scope: many },
    schema: z.object({
      tenant,
      api: z.string({ error: 'is required' }).min(1),
      client: z.string({ error: 'is required' }).min(1),
      scope: z.array(z.string()).default([]),
    }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const api = await grantApi(env.db, a.tenant, a.api, { clientId: a.client, scopes: a.scope }, env.now());
      await note(env, a.tenant, 'api.grant', api.id, { clientId: a.client, scopes: a.scope });
      return { json: api, text: `${a.client} on ${api.identifier}: ${a.scope.join(' ') || '(revoked)'}` };
    },
  }),

  'keys list': command({
    summary: "the tenant's token signing keys: signing, next and retiring",
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const keys = await listSigningKeys(env, a.tenant);
      return { json: keys, text: keyTable(keys) };
    },
  }),

  'keys rotate': command({
    summary: 'rotate the signing keys: published now, signing after signingKeyPublishDelayS',
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const keys = await rotateSigningKeys(env, a.tenant, {
        publishDelayS: keyTimings(env.config).publishDelayS,
        maxTokenTtlS: await maxSignedTokenTtlS(env.db, a.tenant),
      });
      await note(env, a.tenant, 'keys.rotate', a.tenant, {
        next: keys.filter((k) => k.state === 'next').map((k) => k.kid),
      });
      return { json: keys, text: keyTable(keys) };
    },
  }),
};
