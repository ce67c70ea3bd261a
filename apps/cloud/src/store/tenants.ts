/**
 * Tenants: each has its own CA (signs its agents' certificates), its own OIDC signing key and
 * cookie keys, all sealed with the configured secret key so a copy of the database alone reveals
 * none of them.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createCa, GatehouseError, TenantId } from '@gatehouse/protocol';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Selectable } from 'kysely';
import { z } from 'zod';
import type { CloudContext } from '../context.ts';
import type { Db } from '../db/index.ts';
import type { TenantTable } from '../db/schema.ts';
import { insertDomain } from './domains.ts';
import { hashPassword } from './password.ts';
import { insertCloudUser, Password } from './users.ts';
import { DomainName, parse, Upn } from './util.ts';

export type LoginAttribute = 'upn' | 'mail';

export interface Tenant {
  id: string;
  name: string;
  createdAt: number;
  ptaEnabled: boolean;
  legacyAuth: boolean;
  /** A sign-in by a name not synced asks an agent to look the user up and creates them (jit.ts). */
  jitUsers: boolean;
  loginAttribute: LoginAttribute;
  lockoutThreshold: number;
  lockoutDurationS: number;
  /** The directory's own lockout policy, as an agent last reported it (null until one does). */
  directoryLockout: { threshold: number; durationS: number } | null;
  /** What smart lockout applies: the settings above, tightened to stay inside the directory's lockout. */
  effectiveLockout: EffectiveLockout;
  /** The tenant CA certificate (PEM); public. */
  caCertPem: string;
}

export interface EffectiveLockout {
  threshold: number;
  durationS: number;
  /** Wrong passwords that may reach the directory, every location together, before it would lock
   * the account (its threshold less one); null when the directory reported no lockout. */
  directoryBudget: number | null;
  /** How long the directory may remember a wrong password: its lockout duration, which in AD is at
   * least its reset window ("until unlocked" and anything above a day count as a day). */
  directoryWindowS: number;
}

const MAX_LOCKOUT_DURATION_S = 86_400;

/**
 * The loosest settings that still trip before the directory's lockout, or null when it has none.
 * Smart lockout counts familiar and unfamiliar locations apart, and both end at the same directory
 * account: each may use half of what the directory allows (its threshold less one), so an attacker
 * elsewhere is locked out in the cloud while the real user, at home, still has tries of their own,
 * and the directory never locks. The shared budget (directoryBudget) still bounds the sum.
 */
export const lockoutBounds = (
  directory: { threshold: number; durationS: number } | null,
): { maxThreshold: number; minDurationS: number } | null => {
  if (!directory || directory.threshold <= 0) return null;
  return {
    // A directory that locks at the first or second failure cannot give each location one; 1 is
    // the best there is, and the shared budget then stops the second location.
    maxThreshold: Math.max(1, Math.floor((directory.threshold - 1) / 2)),
    minDurationS:
      directory.durationS > 0
        ? Math.min(MAX_LOCKOUT_DURATION_S, Math.ceil(directory.durationS))
        : MAX_LOCKOUT_DURATION_S,
  };
};

/**
 * The directory's policy is a floor, not a suggestion: a setting looser than it (the default 10,
 * or a directory that tightened its policy since) is tightened here, without an administrator.
 */
export const effectiveLockout = (
  setting: { threshold: number; durationS: number },
  directory: { threshold: number; durationS: number } | null,
): EffectiveLockout => {
  const b = lockoutBounds(directory);
  if (!b || !directory) return { ...setting, directoryBudget: null, directoryWindowS: 0 };
  return {
    threshold: Math.min(setting.threshold, b.maxThreshold),
    durationS: Math.max(setting.durationS, b.minDurationS),
    directoryBudget: Math.max(1, directory.threshold - 1),
    directoryWindowS: b.minDurationS,
  };
};

export interface TenantSecrets {
  caKeyPem: string;
  caCertPem: string;
  /** Private JWKS for oidc-provider's `jwks` option. */
  jwks: { keys: JWK[] };
  /** Cookie signing keys for oidc-provider's `cookies.keys` (newest first). */
  cookieKeys: string[];
}

export const toTenant = (r: Selectable<TenantTable>): Tenant => {
  const directoryLockout =
    r.directory_lockout_threshold === null
      ? null
      : { threshold: r.directory_lockout_threshold, durationS: r.directory_lockout_duration_s ?? 0 };
  return {
    id: r.id,
    name: r.name,
    createdAt: r.created_at,
    ptaEnabled: r.pta_enabled === 1,
    legacyAuth: r.legacy_auth === 1,
    jitUsers: r.jit_users === 1,
    loginAttribute: r.login_attribute === 'mail' ? 'mail' : 'upn',
    lockoutThreshold: r.lockout_threshold,
    lockoutDurationS: r.lockout_duration_s,
    directoryLockout,
    effectiveLockout: effectiveLockout(
      { threshold: r.lockout_threshold, durationS: r.lockout_duration_s },
      directoryLockout,
    ),
    caCertPem: r.ca_cert,
  };
};

export const CreateTenantInput = z.object({
  name: z.string().trim().min(1).max(200),
  domain: DomainName,
  admin: z.object({
    upn: Upn,
    password: Password,
    displayName: z.string().trim().min(1).max(256).optional(),
  }),
});
export type CreateTenantInput = z.input<typeof CreateTenantInput>;

/** Makes a tenant with its keys, its first (unverified, managed) domain and its cloud-only Global Administrator. */
export const createTenant = async (
  ctx: Pick<CloudContext, 'db' | 'secrets' | 'now'>,
  input: CreateTenantInput,
): Promise<{ tenantId: string; adminUserId: string }> => {
  const t = parse(CreateTenantInput, input);
  const id = randomUUID();
  const now = ctx.now();
  // Slow work (key generation, scrypt) happens before the transaction so it holds no lock meanwhile.
  const ca = await createCa(`Gatehouse tenant ${id}`, 3650);
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const jwks = { keys: [{ ...jwk, kid: randomBytes(12).toString('base64url'), alg: 'ES256', use: 'sig' }] };
  const cookieKeys = [randomBytes(32).toString('base64url'), randomBytes(32).toString('base64url')];
  const passwordHash = await hashPassword(t.admin.password);
  const adminUserId = await ctx.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('tenants')
      .values({
        id,
        name: t.name,
        created_at: now,
        pta_enabled: 0,
        legacy_auth: 0,
        jit_users: 0,
        login_attribute: 'upn',
        lockout_threshold: 10,
        lockout_duration_s: 60,
        ca_cert: ca.certPem,
        ca_key_sealed: ctx.secrets.seal(ca.keyPem, `tenant-ca:${id}`),
        jwks_sealed: ctx.secrets.seal(JSON.stringify(jwks), `tenant-jwks:${id}`),
        cookie_keys_sealed: ctx.secrets.seal(JSON.stringify(cookieKeys), `tenant-cookies:${id}`),
      })
      .execute();
    await insertDomain(trx, id, t.domain, now);
    return insertCloudUser(
      trx,
      id,
      { upn: t.admin.upn, passwordHash, displayName: t.admin.displayName, roles: ['global_admin'] },
      now,
    );
  });
  return { tenantId: id, adminUserId };
};

/** The tenant, or not_found. */
export const getTenant = async (db: Db, id: string): Promise<Tenant> => {
  const r = await db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
  if (!r) throw new GatehouseError('not_found', { tenant: id });
  return toTenant(r);
};

export const listTenants = async (db: Db): Promise<Tenant[]> =>
  (await db.selectFrom('tenants').selectAll().orderBy('created_at').execute()).map(toTenant);

export const getTenantSecrets = async (
  ctx: Pick<CloudContext, 'db' | 'secrets'>,
  id: string,
): Promise<TenantSecrets> => {
  const r = await ctx.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
  if (!r) throw new GatehouseError('not_found', { tenant: id });
  return {
    caCertPem: r.ca_cert,
    caKeyPem: ctx.secrets.open(r.ca_key_sealed, `tenant-ca:${id}`),
    jwks: JSON.parse(ctx.secrets.open(r.jwks_sealed, `tenant-jwks:${id}`)) as { keys: JWK[] },
    cookieKeys: JSON.parse(ctx.secrets.open(r.cookie_keys_sealed, `tenant-cookies:${id}`)) as string[],
  };
};

export const TenantSettings = z
  .object({
    ptaEnabled: z.boolean().optional(),
    legacyAuth: z.boolean().optional(),
    jitUsers: z.boolean().optional(),
    loginAttribute: z.enum(['upn', 'mail']).optional(),
    lockoutThreshold: z.number().int().min(1).max(100).optional(),
    lockoutDurationS: z.number().int().min(1).max(86_400).optional(),
  })
  .strict();
export type TenantSettings = z.input<typeof TenantSettings>;

/**
 * Changes tenant switches. Turning pass-through authentication on with no active agent would lock
 * every synced user out, so it is refused (`no_active_agent`); the caller counts active agents.
 * A lockout setting looser than the directory's own lockout is refused (`lockout_weaker_than_directory`).
 */
export const updateSettings = async (
  db: Db,
  id: string,
  settings: TenantSettings,
  state: { activeAgents: number },
): Promise<Tenant> => {
  const tid = parse(TenantId, id);
  const s = parse(TenantSettings, settings);
  const current = await getTenant(db, tid);
  if (s.ptaEnabled === true && state.activeAgents === 0) {
    throw new GatehouseError('no_active_agent', { tenant: tid });
  }
  // A looser setting would be overridden anyway; refusing it tells the administrator so.
  const bounds = lockoutBounds(current.directoryLockout);
  if (
    bounds &&
    ((s.lockoutThreshold !== undefined && s.lockoutThreshold > bounds.maxThreshold) ||
      (s.lockoutDurationS !== undefined && s.lockoutDurationS < bounds.minDurationS))
  ) {
    throw new GatehouseError('lockout_weaker_than_directory', {
      tenant: tid,
      directory: current.directoryLockout,
      ...bounds,
    });
  }
  const set: Partial<Selectable<TenantTable>> = {};
  if (s.ptaEnabled !== undefined) set.pta_enabled = s.ptaEnabled ? 1 : 0;
  if (s.legacyAuth !== undefined) set.legacy_auth = s.legacyAuth ? 1 : 0;
  if (s.jitUsers !== undefined) set.jit_users = s.jitUsers ? 1 : 0;
  if (s.loginAttribute !== undefined) set.login_attribute = s.loginAttribute;
  if (s.lockoutThreshold !== undefined) set.lockout_threshold = s.lockoutThreshold;
  if (s.lockoutDurationS !== undefined) set.lockout_duration_s = s.lockoutDurationS;
  if (Object.keys(set).length > 0) await db.updateTable('tenants').set(set).where('id', '=', tid).execute();
  return getTenant(db, tid);
};

export const tenantExists = async (db: Db, id: string): Promise<boolean> =>
  (await db.selectFrom('tenants').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;

/** The tenant CA's certificate (PEM), or undefined for an unknown tenant. */
export const tenantCaCert = async (db: Db, id: string): Promise<string | undefined> =>
  (await db.selectFrom('tenants').select('ca_cert').where('id', '=', id).executeTakeFirst())?.ca_cert;

/** The directory's own lockout policy, as an agent reported it. */
export const setDirectoryLockout = async (
  db: Db,
  id: string,
  policy: { threshold: number; durationS: number },
): Promise<void> => {
  await db
    .updateTable('tenants')
    .set({ directory_lockout_threshold: policy.threshold, directory_lockout_duration_s: policy.durationS })
    .where('id', '=', id)
    .execute();
};
