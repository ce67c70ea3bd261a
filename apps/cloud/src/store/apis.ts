/**
 * APIs (resource servers) a tenant registers, with the scopes they define, and the scopes an
 * administrator granted each client on each. A client gets a token for an API (RFC 8707 resource
 * indicator) only with a grant, and only the granted scopes: in the code flow on behalf of the
 * signed-in user, by client_credentials as itself (oidc/resources.ts).
 */
import { randomUUID } from 'node:crypto';
import { GatehouseError, TenantId } from '@gatehouse/protocol';
import type { Selectable } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { ApiTable } from '../db/schema.ts';
import { getClient } from './clients.ts';
import { isUniqueViolation, jsonStringArray, parse } from './util.ts';

/** RFC 6749 scope-token characters; `openid` and friends belong to the provider itself. */
const ScopeName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'a scope name without spaces, quotes or backslashes')
  .refine((s) => !['openid', 'profile', 'email', 'offline_access', 'address', 'phone'].includes(s), {
    message: 'is an OpenID Connect scope',
  });

/** The longest access token an API may ask for; signing keys stay published this long after. */
export const MAX_API_TOKEN_TTL_S = 86_400;

export const CreateApiInput = z
  .object({
    name: z.string().trim().min(1).max(200),
    /** The resource indicator clients send, and the `aud` of the API's tokens (absolute, no fragment). */
    identifier: z
      .url()
      .max(500)
      .refine((u) => !u.includes('#'), { message: 'must not have a fragment' }),
    scopes: z.array(ScopeName).max(100).default([]),
    /** jwt: RFC 9068 tokens the API checks offline against the JWKS; opaque: it introspects them. */
    tokenFormat: z.enum(['jwt', 'opaque']).default('jwt'),
    signingAlg: z.enum(['ES256', 'RS256']).default('ES256'),
    accessTokenTtlS: z.number().int().min(60).max(MAX_API_TOKEN_TTL_S).default(3600),
    /** A confidential client of the tenant the API authenticates as to introspect its tokens. */
    introspectionClientId: z.string().min(1).max(128).optional(),
  })
  .strict()
  .transform((a) => ({ ...a, scopes: [...new Set(a.scopes)] }));
export type CreateApiInput = z.input<typeof CreateApiInput>;

export const GrantApiInput = z
  .object({ clientId: z.string().min(1).max(128), scopes: z.array(ScopeName).max(100) })
  .strict();
export type GrantApiInput = z.input<typeof GrantApiInput>;

export interface Api {
  id: string;
  name: string;
  identifier: string;
  scopes: string[];
  tokenFormat: 'jwt' | 'opaque';
  signingAlg: 'ES256' | 'RS256';
  accessTokenTtlS: number;
  introspectionClientId: string | null;
  createdAt: number;
  /** Clients granted scopes on it. */
  grants: { clientId: string; scopes: string[] }[];
}

const toApi = (r: Selectable<ApiTable>, grants: Api['grants']): Api => ({
  id: r.id,
  name: r.name,
  identifier: r.identifier,
  scopes: jsonStringArray(r.scopes),
  tokenFormat: r.token_format === 'opaque' ? 'opaque' : 'jwt',
  signingAlg: r.signing_alg === 'RS256' ? 'RS256' : 'ES256',
  accessTokenTtlS: r.access_token_ttl_s,
  introspectionClientId: r.introspection_client_id,
  createdAt: r.created_at,
  grants,
});

/** The client, of this tenant, or not_found; `confidential` also refuses public clients. */
const tenantClient = async (db: Db, tenantId: string, clientId: string, confidential: boolean) => {
  const c = await getClient(db, clientId);
  if (!c || c.tenantId !== tenantId) throw new GatehouseError('not_found', { client: clientId });
  if (confidential && c.metadata.token_endpoint_auth_method === 'none')
    throw new GatehouseError('validation_failed', [
      { path: 'clientId', message: 'must be a confidential client (it authenticates with a secret)' },
    ]);
  return c;
};

export const createApi = async (
  db: Db,
  tenantId: string,
  input: CreateApiInput,
  now: number,
): Promise<Api> => {
  const tid = parse(TenantId, tenantId);
  const a = parse(CreateApiInput, input);
  if (a.introspectionClientId) await tenantClient(db, tid, a.introspectionClientId, true);
  const id = randomUUID();
  try {
    await db
      .insertInto('apis')
      .values({
        id,
        tenant_id: tid,
        identifier: a.identifier,
        name: a.name,
        scopes: JSON.stringify(a.scopes),
        token_format: a.tokenFormat,
        signing_alg: a.signingAlg,
        access_token_ttl_s: a.accessTokenTtlS,
        introspection_client_id: a.introspectionClientId ?? null,
        created_at: now,
      })
      .execute();
  } catch (err) {
    if (isUniqueViolation(err))
      throw new GatehouseError('conflict', {
        reason: 'an API with this identifier exists',
        identifier: a.identifier,
      });
    throw err;
  }
  return getApi(db, tid, id);
};

const grantsOf = async (db: Db, apiIds: string[]) => {
  if (apiIds.length === 0) return new Map<string, Api['grants']>();
  const rows = await db
    .selectFrom('api_grants')
    .select(['api_id', 'client_id', 'scopes'])
    .where('api_id', 'in', apiIds)
    .orderBy('granted_at')
    .execute();
  const m = new Map<string, Api['grants']>();
  for (const r of rows) {
    const list = m.get(r.api_id) ?? [];
    list.push({ clientId: r.client_id, scopes: jsonStringArray(r.scopes) });
    m.set(r.api_id, list);
  }
  return m;
};

export const listApis = async (db: Db, tenantId: string): Promise<Api[]> => {
  const rows = await db
    .selectFrom('apis')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('created_at')
    .execute();
  const grants = await grantsOf(
    db,
    rows.map((r) => r.id),
  );
  return rows.map((r) => toApi(r, grants.get(r.id) ?? []));
};

/** The API, by id or by its identifier, or not_found. */
export const getApi = async (db: Db, tenantId: string, idOrIdentifier: string): Promise<Api> => {
  const r = await db
    .selectFrom('apis')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where((eb) => eb.or([eb('id', '=', idOrIdentifier), eb('identifier', '=', idOrIdentifier)]))
    .executeTakeFirst();
  if (!r) throw new GatehouseError('not_found', { api: idOrIdentifier });
  return toApi(r, (await grantsOf(db, [r.id])).get(r.id) ?? []);
};

/** Deletes the API and its grants; tokens already issued for it run out by their own expiry. */
export const deleteApi = async (db: Db, tenantId: string, idOrIdentifier: string): Promise<Api> => {
  const api = await getApi(db, tenantId, idOrIdentifier);
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom('api_grants').where('api_id', '=', api.id).execute();
    await trx.deleteFrom('apis').where('id', '=', api.id).execute();
  });
  return api;
};

/** Sets the scopes a client is granted on the API (replacing any earlier grant; none revokes it). */
export const grantApi = async (
  db: Db,
  tenantId: string,
  idOrIdentifier: string,
  input: GrantApiInput,
  now: number,
): Promise<Api> => {
  const g = parse(GrantApiInput, input);
  const api = await getApi(db, tenantId, idOrIdentifier);
  const unknown = g.scopes.filter((s) => !api.scopes.includes(s));
  if (unknown.length > 0)
    throw new GatehouseError('validation_failed', [
      { path: 'scopes', message: `not scopes of this API: ${unknown.join(' ')}` },
    ]);
  await tenantClient(db, tenantId, g.clientId, false);
  await db.transaction().execute(async (trx) => {
    await trx
      .deleteFrom('api_grants')
      .where('api_id', '=', api.id)
      .where('client_id', '=', g.clientId)
      .execute();
    if (g.scopes.length > 0 || api.scopes.length === 0)
      await trx
        .insertInto('api_grants')
        .values({
          tenant_id: tenantId,
          api_id: api.id,
          client_id: g.clientId,
          scopes: JSON.stringify([...new Set(g.scopes)]),
          granted_at: now,
        })
        .execute();
  });
  return getApi(db, tenantId, api.id);
};

/** What the provider needs for a resource indicator: the API and what this client may have of it. */
export const apiForClient = async (
  db: Db,
  tenantId: string,
  identifier: string,
  clientId: string,
): Promise<{ api: Api; scopes: string[] } | null> => {
  const r = await db
    .selectFrom('apis')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('identifier', '=', identifier)
    .executeTakeFirst();
  if (!r) return null;
  const g = await db
    .selectFrom('api_grants')
    .select('scopes')
    .where('api_id', '=', r.id)
    .where('client_id', '=', clientId)
    .executeTakeFirst();
  if (!g) return null;
  return { api: toApi(r, []), scopes: jsonStringArray(g.scopes) };
};

/** The identifiers of the APIs that introspect as this client. */
export const apisIntrospectedBy = async (db: Db, tenantId: string, clientId: string): Promise<string[]> =>
  (
    await db
      .selectFrom('apis')
      .select('identifier')
      .where('tenant_id', '=', tenantId)
      .where('introspection_client_id', '=', clientId)
      .execute()
  ).map((r) => r.identifier);
