/**
 * OIDC relying parties, stored as oidc-provider client metadata (one Provider per tenant reads them).
 * A confidential client's secret is shown once, at creation; only its hash is stored.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { GatehouseError, TenantId } from '@gatehouse/protocol';
import { z } from 'zod';
import { hashClientSecret } from '../db/at-rest.ts';
import type { Db } from '../db/index.ts';
import { ROLES, type Role } from './users.ts';
import { parse } from './util.ts';

export const GRANT_TYPES = ['authorization_code', 'refresh_token', 'password', 'client_credentials'] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

/**
 * Which groups go in the client's tokens (`groups` claim) and how they are written. Past `limit`
 * the claim is replaced by a pointer the client follows with the user's access token (overage,
 * as Entra does for JWTs past 200 groups).
 */
export const GroupsClaimSetting = z
  .object({
    /** none; every group; security groups only; only the groups in `assigned`. */
    include: z.enum(['none', 'all', 'security', 'assigned']).default('none'),
    /** The group's object id (default), its on-premises NETBIOS\name, or its name. */
    format: z.enum(['id', 'netbios', 'name']).default('id'),
    limit: z.number().int().min(1).max(1000).default(200),
    /** Group ids assigned to the application (with include 'assigned'). */
    assigned: z.array(z.string().min(1).max(128)).max(1000).default([]),
  })
  .strict();
export type GroupsClaimSetting = z.output<typeof GroupsClaimSetting>;

/**
 * How the client's ID tokens are signed (`id_token_signed_response_alg`): ES256 unless the app
 * asks for RS256, which some older relying parties are limited to (and OIDC Discovery requires
 * a provider to offer). The tenant has a key of each (store/signing-keys.ts).
 */
export const ID_TOKEN_ALGS = ['ES256', 'RS256'] as const;
export const IdTokenAlg = z.enum(ID_TOKEN_ALGS, { error: 'ES256 or RS256' });
export type IdTokenAlg = z.infer<typeof IdTokenAlg>;

/** Admin roles go only to a confidential client that can get tokens of its own (client_credentials). */
function serviceRolesAllowed(c: {
  adminRoles: readonly string[];
  public: boolean;
  grantTypes: readonly string[];
}) {
  return c.adminRoles.length === 0 || (!c.public && c.grantTypes.includes('client_credentials'));
}
/** client_credentials authenticates the app itself: a public client has nothing to prove it. */
const CREDENTIALS_MESSAGE = {
  message: 'the client_credentials grant needs a confidential client',
  path: ['grantTypes'],
};
const SERVICE_ROLES_MESSAGE = {
  message: 'admin roles need a confidential client with the client_credentials grant',
  path: ['adminRoles'],
};

export const CreateClientInput = z
  .object({
    name: z.string().trim().min(1).max(200),
    redirectUris: z.array(z.url()).max(20).default([]),
    /** Where an RP-initiated logout may return (`post_logout_redirect_uri`). */
    postLogoutRedirectUris: z.array(z.url()).max(20).default([]),
    /** First-party apps (the default: the tenant registered them) skip the consent page. */
    firstParty: z.boolean().default(true),
    /** Admin roles of the app as a service principal (client_credentials tokens on the admin API). */
    adminRoles: z.array(z.enum(ROLES)).max(ROLES.length).default([]),
    /** Public clients (SPAs, native apps) have no secret and must use PKCE. */
    public: z.boolean().default(false),
    /** The full list of grant types (default authorization_code + refresh_token). */
    grantTypes: z.array(z.enum(GRANT_TYPES)).min(1).max(GRANT_TYPES.length).optional(),
    groups: GroupsClaimSetting.optional(),
    /** Absent: the provider's default, ES256. */
    idTokenAlg: IdTokenAlg.optional(),
  })
  .transform((c) => ({
    ...c,
    grantTypes: [...new Set<GrantType>(c.grantTypes ?? ['authorization_code', 'refresh_token'])],
  }))
  .refine((c) => !c.grantTypes.includes('authorization_code') || c.redirectUris.length > 0, {
    message: 'the authorization code grant needs at least one redirect URI',
    path: ['redirectUris'],
  })
  .refine((c) => !c.public || !c.grantTypes.includes('client_credentials'), CREDENTIALS_MESSAGE)
  .refine(serviceRolesAllowed, SERVICE_ROLES_MESSAGE);
export type CreateClientInput = z.input<typeof CreateClientInput>;

/** What is stored: never the secret itself. */
export interface StoredClientMetadata {
  client_id: string;
  /** `sha256:...` of the secret (db/at-rest.ts). */
  client_secret_hash?: string;
  client_name: string;
  redirect_uris: string[];
  grant_types: GrantType[];
  response_types: string[];
  token_endpoint_auth_method: 'none' | 'client_secret_basic';
  /** The groups claim (extra client metadata, validated by oidc-provider with GroupsClaimSetting). */
  gatehouse_groups?: GroupsClaimSetting;
  post_logout_redirect_uris?: string[];
  /** Absent on rows written before the setting existed: those apps were first-party. */
  gatehouse_first_party?: boolean;
  gatehouse_admin_roles?: Role[];
  /** Absent: ES256 (the provider's clientDefaults, oidc/provider.ts). */
  id_token_signed_response_alg?: IdTokenAlg;
}

/** What oidc-provider reads. */
export interface ClientMetadata {
  client_id: string;
  /** The stored hash: oidc-provider requires a secret for client_secret_basic, and the
   * provider's compareClientSecret hashes what the client presents before comparing. */
  client_secret?: string;
  client_name: string;
  redirect_uris: string[];
  grant_types: GrantType[];
  response_types: string[];
  token_endpoint_auth_method: 'none' | 'client_secret_basic';
  gatehouse_groups?: GroupsClaimSetting;
  post_logout_redirect_uris?: string[];
  gatehouse_first_party?: boolean;
  gatehouse_admin_roles?: Role[];
  id_token_signed_response_alg?: IdTokenAlg;
}

export const createClient = async (
  db: Db,
  tenantId: string,
  input: CreateClientInput,
  now: number = Date.now(),
): Promise<{ clientId: string; clientSecret?: string }> => {
  const tid = parse(TenantId, tenantId);
  const c = parse(CreateClientInput, input);
  const clientId = randomUUID();
  const clientSecret = c.public ? undefined : randomBytes(32).toString('base64url');
  const metadata: StoredClientMetadata = {
    client_id: clientId,
    ...(clientSecret ? { client_secret_hash: hashClientSecret(clientSecret) } : {}),
    client_name: c.name,
    redirect_uris: c.redirectUris,
    grant_types: c.grantTypes,
    response_types: c.grantTypes.includes('authorization_code') ? ['code'] : [],
    token_endpoint_auth_method: c.public ? 'none' : 'client_secret_basic',
    ...(c.groups ? { gatehouse_groups: c.groups } : {}),
    post_logout_redirect_uris: c.postLogoutRedirectUris,
    gatehouse_first_party: c.firstParty,
    gatehouse_admin_roles: c.adminRoles,
    ...(c.idTokenAlg ? { id_token_signed_response_alg: c.idTokenAlg } : {}),
  };
  await db
    .insertInto('clients')
    .values({ client_id: clientId, tenant_id: tid, metadata: JSON.stringify(metadata), created_at: now })
    .execute();
  return clientSecret ? { clientId, clientSecret } : { clientId };
};

/** The client and its tenant, or null (oidc-provider's adapter answers "unknown client" then). */
export const getClient = async (
  db: Db,
  clientId: string,
): Promise<{ tenantId: string; metadata: ClientMetadata } | null> => {
  const r = await db.selectFrom('clients').selectAll().where('client_id', '=', clientId).executeTakeFirst();
  if (!r) return null;
  const { client_secret_hash, ...rest } = JSON.parse(r.metadata) as StoredClientMetadata;
  return {
    tenantId: r.tenant_id,
    metadata: client_secret_hash ? { ...rest, client_secret: client_secret_hash } : rest,
  };
};

/** Clients of a tenant, without their secrets. */
export const listClients = async (
  db: Db,
  tenantId: string,
): Promise<
  { clientId: string; createdAt: number; metadata: Omit<StoredClientMetadata, 'client_secret_hash'> }[]
> => {
  const rows = await db
    .selectFrom('clients')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('created_at')
    .execute();
  return rows.map((r) => {
    const { client_secret_hash: _, ...metadata } = JSON.parse(r.metadata) as StoredClientMetadata;
    return { clientId: r.client_id, createdAt: r.created_at, metadata };
  });
};

/** Sets which groups go in a client's tokens; the provider reads it at the next token. */
export const setClientGroups = async (
  db: Db,
  tenantId: string,
  clientId: string,
  setting: z.input<typeof GroupsClaimSetting>,
): Promise<GroupsClaimSetting> => {
  const g = parse(GroupsClaimSetting, setting);
  const r = await db
    .selectFrom('clients')
    .select('metadata')
    .where('tenant_id', '=', tenantId)
    .where('client_id', '=', clientId)
    .executeTakeFirst();
  if (!r) throw new GatehouseError('not_found', { client: clientId });
  const metadata = { ...(JSON.parse(r.metadata) as StoredClientMetadata), gatehouse_groups: g };
  await db
    .updateTable('clients')
    .set({ metadata: JSON.stringify(metadata) })
    .where('tenant_id', '=', tenantId)
    .where('client_id', '=', clientId)
    .execute();
  return g;
};

/** An application as the admin API and the CLI show it: never the secret or its hash. */
export interface AppView {
  clientId: string;
  name: string;
  public: boolean;
  grantTypes: GrantType[];
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  firstParty: boolean;
  adminRoles: Role[];
  groups: GroupsClaimSetting | null;
  idTokenAlg: IdTokenAlg;
  createdAt: number;
}

const viewOf = (row: { client_id: string; metadata: string; created_at: number }): AppView => {
  const m = JSON.parse(row.metadata) as StoredClientMetadata;
  return {
    clientId: row.client_id,
    name: m.client_name,
    public: m.token_endpoint_auth_method === 'none',
    grantTypes: m.grant_types,
    redirectUris: m.redirect_uris,
    postLogoutRedirectUris: m.post_logout_redirect_uris ?? [],
    firstParty: m.gatehouse_first_party ?? true,
    adminRoles: m.gatehouse_admin_roles ?? [],
    groups: m.gatehouse_groups ?? null,
    idTokenAlg: m.id_token_signed_response_alg ?? 'ES256',
    createdAt: row.created_at,
  };
};

const rowOf = async (db: Db, tenantId: string, clientId: string) => {
  const r = await db
    .selectFrom('clients')
    .select(['client_id', 'metadata', 'created_at'])
    .where('tenant_id', '=', tenantId)
    .where('client_id', '=', clientId)
    .executeTakeFirst();
  if (!r) throw new GatehouseError('not_found', { client: clientId });
  return r;
};

export const listApps = async (db: Db, tenantId: string): Promise<AppView[]> =>
  (
    await db
      .selectFrom('clients')
      .select(['client_id', 'metadata', 'created_at'])
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at')
      .execute()
  ).map(viewOf);

/** One application of the tenant; another tenant's is not_found, like one that does not exist. */
export const getApp = async (db: Db, tenantId: string, clientId: string): Promise<AppView> =>
  viewOf(await rowOf(db, tenantId, clientId));

/** Every field optional; `public` switches the kind (to confidential makes a secret, shown once). */
export const UpdateClientInput = z
  .object({
    name: z.string().trim().min(1).max(200),
    redirectUris: z.array(z.url()).max(20),
    postLogoutRedirectUris: z.array(z.url()).max(20),
    public: z.boolean(),
    grantTypes: z.array(z.enum(GRANT_TYPES)).min(1).max(GRANT_TYPES.length),
    firstParty: z.boolean(),
    adminRoles: z.array(z.enum(ROLES)).max(ROLES.length),
    /** Replaces the whole groups claim setting (include 'none' turns the claim off). */
    groups: GroupsClaimSetting,
    idTokenAlg: IdTokenAlg,
  })
  .partial()
  .strict()
  .refine((p) => Object.keys(p).length > 0, { message: 'nothing to change' });
export type UpdateClientInput = z.input<typeof UpdateClientInput>;

const CheckedApp = z
  .object({
    redirectUris: z.array(z.string()),
    public: z.boolean(),
    grantTypes: z.array(z.string()),
    adminRoles: z.array(z.string()),
  })
  .refine((c) => !c.grantTypes.includes('authorization_code') || c.redirectUris.length > 0, {
    message: 'the authorization code grant needs at least one redirect URI',
    path: ['redirectUris'],
  })
  .refine((c) => !c.public || !c.grantTypes.includes('client_credentials'), CREDENTIALS_MESSAGE)
  .refine(serviceRolesAllowed, SERVICE_ROLES_MESSAGE);

/**
 * Changes an application; the provider sees it within the client cache's second (oidc/adapter.ts).
 * Returns the new secret when the app became confidential.
 */
export const updateClient = async (
  db: Db,
  tenantId: string,
  clientId: string,
  input: UpdateClientInput,
): Promise<{ app: AppView; clientSecret?: string }> => {
  const p = parse(UpdateClientInput, input);
  return db.transaction().execute(async (trx) => {
    const row = await rowOf(trx, tenantId, clientId);
    const m = JSON.parse(row.metadata) as StoredClientMetadata;
    const grantTypes = p.grantTypes ? [...new Set(p.grantTypes)] : m.grant_types;
    const wasPublic = m.token_endpoint_auth_method === 'none';
    const isPublic = p.public ?? wasPublic;
    const next: StoredClientMetadata = {
      ...m,
      client_name: p.name ?? m.client_name,
      redirect_uris: p.redirectUris ?? m.redirect_uris,
      post_logout_redirect_uris: p.postLogoutRedirectUris ?? m.post_logout_redirect_uris ?? [],
      grant_types: grantTypes,
      response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
      token_endpoint_auth_method: isPublic ? 'none' : 'client_secret_basic',
      gatehouse_first_party: p.firstParty ?? m.gatehouse_first_party ?? true,
      gatehouse_admin_roles: p.adminRoles ?? m.gatehouse_admin_roles ?? [],
      ...(p.groups ? { gatehouse_groups: p.groups } : {}),
      ...(p.idTokenAlg ? { id_token_signed_response_alg: p.idTokenAlg } : {}),
    };
    parse(CheckedApp, {
      redirectUris: next.redirect_uris,
      public: isPublic,
      grantTypes: next.grant_types,
      adminRoles: next.gatehouse_admin_roles,
    });
    let clientSecret: string | undefined;
    if (isPublic) delete next.client_secret_hash;
    else if (wasPublic) {
      clientSecret = randomBytes(32).toString('base64url');
      next.client_secret_hash = hashClientSecret(clientSecret);
    }
    await writeMetadata(trx, tenantId, clientId, next);
    const app = viewOf({ ...row, metadata: JSON.stringify(next) });
    return clientSecret ? { app, clientSecret } : { app };
  });
};

const writeMetadata = (db: Db, tenantId: string, clientId: string, m: StoredClientMetadata) =>
  db
    .updateTable('clients')
    .set({ metadata: JSON.stringify(m) })
    .where('tenant_id', '=', tenantId)
    .where('client_id', '=', clientId)
    .execute();

/**
 * A new secret for a confidential client, returned once; only its hash is kept and the old one
 * stops working (within the provider's client cache, a second). A public client has none: conflict.
 */
export const rotateClientSecret = async (db: Db, tenantId: string, clientId: string): Promise<string> =>
  db.transaction().execute(async (trx) => {
    const m = JSON.parse((await rowOf(trx, tenantId, clientId)).metadata) as StoredClientMetadata;
    if (m.token_endpoint_auth_method === 'none')
      throw new GatehouseError('conflict', { reason: 'a public client has no secret' });
    const clientSecret = randomBytes(32).toString('base64url');
    await writeMetadata(trx, tenantId, clientId, {
      ...m,
      client_secret_hash: hashClientSecret(clientSecret),
    });
    return clientSecret;
  });

/**
 * Deletes an application. Its tokens die with it: oidc-provider refuses a token whose client it
 * cannot find (userinfo, introspection, refresh), and the admin API reads the client on every call.
 */
export const deleteClient = async (db: Db, tenantId: string, clientId: string): Promise<void> => {
  const r = await db
    .deleteFrom('clients')
    .where('tenant_id', '=', tenantId)
    .where('client_id', '=', clientId)
    .executeTakeFirst();
  if (Number(r.numDeletedRows) === 0) throw new GatehouseError('not_found', { client: clientId });
};
