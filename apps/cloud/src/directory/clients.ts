/**
 * OIDC relying parties, stored as oidc-provider client metadata (one Provider per tenant reads them).
 * A confidential client's secret is shown once, at creation; only its hash is stored.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { hashClientSecret } from '../db/at-rest.ts';
import type { Db } from '../db/index.ts';
import { parse, TenantId } from './util.ts';

export const GRANT_TYPES = ['authorization_code', 'refresh_token', 'password'] as const;
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
    /** The group's object id (default), its on-premises NETBIOS\\name, or its name. */
    format: z.enum(['id', 'netbios', 'name']).default('id'),
    limit: z.number().int().min(1).max(1000).default(200),
    /** Group ids assigned to the application (with include 'assigned'). */
    assigned: z.array(z.string().min(1).max(128)).max(1000).default([]),
  })
  .strict();
export type GroupsClaimSetting = z.output<typeof GroupsClaimSetting>;

export const CreateClientInput = z
  .object({
    name: z.string().trim().min(1).max(200),
    redirectUris: z.array(z.url()).max(20).default([]),
    /** Public clients (SPAs, native apps) have no secret and must use PKCE. */
    public: z.boolean().default(false),
    /** The full list of grant types (default authorization_code + refresh_token). */
    grantTypes: z.array(z.enum(GRANT_TYPES)).min(1).max(3).optional(),
    groups: GroupsClaimSetting.optional(),
  })
  .transform((c) => ({
    ...c,
    grantTypes: [...new Set<GrantType>(c.grantTypes ?? ['authorization_code', 'refresh_token'])],
  }))
  .refine((c) => !c.grantTypes.includes('authorization_code') || c.redirectUris.length > 0, {
    message: 'the authorization code grant needs at least one redirect URI',
    path: ['redirectUris'],
  });
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
