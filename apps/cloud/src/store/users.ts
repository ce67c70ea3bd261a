/**
 * The cloud directory's users: cloud-only accounts (with a scrypt hash, e.g. the break-glass
 * Global Administrator) and users synced from on premises (no password in the cloud; keyed by
 * their immutable source anchor, so UPN changes and OU moves update the same row).
 */
import { randomUUID } from 'node:crypto';
import { GatehouseError, SyncedUser, TenantId } from '@gatehouse/protocol';
import { type Selectable, sql } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import { prepare } from '../db/prepared.ts';
import type { UserTable } from '../db/schema.ts';
import { hashPassword } from './password.ts';
import { type KnownRow, planSyncedUsers, SYNC_COLUMNS, syncFields } from './sync-plan.ts';
import { isUniqueViolation, jsonStringArray, parse, Upn } from './util.ts';

export const ROLES = ['global_admin', 'hybrid_identity_admin', 'user_admin', 'reader'] as const;
export type Role = (typeof ROLES)[number];

/** A user as shown to admins and put in tokens: never the password hash. */
export interface User {
  id: string;
  tenantId: string;
  upn: string;
  source: 'cloud' | 'synced';
  displayName: string | null;
  mail: string | null;
  enabled: boolean;
  roles: string[];
  sourceAnchor: string | null;
  onPremName: string | null;
  onPremDn: string | null;
  syncedAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** What the sign-in path needs in addition: the hash of a cloud-only account. */
export interface UserRecord extends User {
  passwordHash: string | null;
}

export const toUserRecord = (r: Selectable<UserTable>): UserRecord => ({
  id: r.id,
  tenantId: r.tenant_id,
  upn: r.upn,
  source: r.source === 'synced' ? 'synced' : 'cloud',
  displayName: r.display_name,
  mail: r.mail,
  enabled: r.enabled === 1,
  roles: jsonStringArray(r.roles),
  sourceAnchor: r.source_anchor,
  onPremName: r.on_prem_name,
  onPremDn: r.on_prem_dn,
  syncedAt: r.synced_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  passwordHash: r.password_hash,
});

const toUser = (r: Selectable<UserTable>): User => {
  const { passwordHash: _, ...user } = toUserRecord(r);
  return user;
};

export const Password = z.string().min(8, 'at least 8 characters').max(256);
const Mail = z
  .string()
  .trim()
  .max(256)
  .regex(/^[^@\s]+@[^@\s]+$/, 'an e-mail address')
  .transform((s) => s.toLowerCase());

export const CreateCloudUserInput = z.object({
  upn: Upn,
  password: Password,
  displayName: z.string().trim().min(1).max(256).optional(),
  mail: Mail.optional(),
  roles: z.array(z.enum(ROLES)).max(ROLES.length).default([]),
});
export type CreateCloudUserInput = z.input<typeof CreateCloudUserInput>;

/** Inserts a cloud-only user with `db` (which may be a transaction). The hash is made by the caller. */
export const insertCloudUser = async (
  db: Db,
  tenantId: string,
  u: { upn: string; passwordHash: string; displayName?: string; mail?: string; roles: string[] },
  now: number,
): Promise<string> => {
  const id = randomUUID();
  try {
    await db
      .insertInto('users')
      .values({
        id,
        tenant_id: tenantId,
        upn: u.upn,
        source: 'cloud',
        password_hash: u.passwordHash,
        display_name: u.displayName ?? null,
        mail: u.mail ?? null,
        enabled: 1,
        roles: JSON.stringify([...new Set(u.roles)]),
        source_anchor: null,
        on_prem_name: null,
        on_prem_dn: null,
        synced_at: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
  } catch (err) {
    if (isUniqueViolation(err)) throw new GatehouseError('conflict', { reason: 'upn_taken', upn: u.upn });
    throw err;
  }
  return id;
};

export const createCloudUser = async (
  db: Db,
  tenantId: string,
  input: CreateCloudUserInput,
  now: number = Date.now(),
): Promise<User> => {
  const tid = parse(TenantId, tenantId);
  const u = parse(CreateCloudUserInput, input);
  const passwordHash = await hashPassword(u.password);
  const id = await insertCloudUser(db, tid, { ...u, passwordHash }, now);
  return (await getUser(db, tid, id))!;
};

export const getUser = async (db: Db, tenantId: string, userId: string): Promise<User | null> => {
  const r = await db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', userId)
    .executeTakeFirst();
  return r ? toUser(r) : null;
};

/**
 * The user a sign-in name denotes. With `loginAttribute` 'mail' (alternate login ID) the name is
 * matched against mail first, then UPN, as Entra does; a mail shared by several users matches none.
 */
const userBy = (column: 'upn' | 'mail' | 'on_prem_name', limit?: number) =>
  prepare((db: Db, p: { tenantId: string; login: string }) =>
    db
      .selectFrom('users')
      .selectAll()
      .where('tenant_id', '=', p.tenantId)
      .where(column === 'on_prem_name' ? sql<string>`lower(on_prem_name)` : column, '=', p.login)
      // A literal: SQLite runs this select three times slower with its limit as a bound parameter.
      .$if(limit !== undefined, (q) => q.limit(sql.lit(limit ?? 0))),
  );
// Prepared (db/prepared.ts): every sign-in looks its user up by one of these. The UPN is unique
// per tenant; the others may match two users, which then match none.
const byUpn = userBy('upn');
const byMail = userBy('mail', 2);
const byOnPremName = userBy('on_prem_name', 2);

export const findByLogin = async (
  db: Db,
  tenantId: string,
  name: string,
  loginAttribute: 'upn' | 'mail',
): Promise<UserRecord | null> => {
  const login = name.trim().toLowerCase();
  if (!login || login.length > 256) return null;
  const p = { tenantId, login };
  // The on-premises DOMAIN\name form (what users of Windows type) names a synced user whatever the
  // tenant's login attribute is.
  if (login.includes('\\')) {
    const { rows } = await byOnPremName(db, p);
    return rows.length === 1 ? toUserRecord(rows[0]!) : null;
  }
  if (loginAttribute === 'mail') {
    const { rows } = await byMail(db, p);
    if (rows.length === 1) return toUserRecord(rows[0]!);
    if (rows.length > 1) return null;
  }
  const { rows } = await byUpn(db, p);
  return rows[0] ? toUserRecord(rows[0]) : null;
};

export const ListUsersOptions = z.object({
  /** Matches the start of the UPN, display name or mail, case-insensitively. */
  search: z.string().trim().max(256).optional(),
  limit: z.number().int().min(1).max(1000).default(100),
  /** `nextCursor` of the previous page. */
  cursor: z.string().max(256).optional(),
});

/** Users ordered by UPN, a page at a time. */
export const listUsers = async (
  db: Db,
  tenantId: string,
  options: z.input<typeof ListUsersOptions> = {},
): Promise<{ users: User[]; nextCursor: string | null }> => {
  const o = parse(ListUsersOptions, options);
  let q = db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId);
  if (o.search) {
    // LIKE wildcards in the search text are taken literally.
    const pattern = `${o.search.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    q = q.where(
      sql<boolean>`(upn LIKE ${pattern} ESCAPE '\\' OR lower(display_name) LIKE ${pattern} ESCAPE '\\' OR mail LIKE ${pattern} ESCAPE '\\')`,
    );
  }
  if (o.cursor) q = q.where('upn', '>', o.cursor);
  const rows = await q
    .orderBy('upn')
    .limit(o.limit + 1)
    .execute();
  const page = rows.slice(0, o.limit).map(toUser);
  return { users: page, nextCursor: rows.length > o.limit ? page.at(-1)!.upn : null };
};

/** Sets a cloud-only user's password. Synced users' passwords live on premises: conflict. */
export const setCloudPassword = async (
  db: Db,
  tenantId: string,
  userId: string,
  password: string,
  now: number = Date.now(),
): Promise<void> => {
  const pw = parse(Password, password);
  const user = await getUser(db, tenantId, userId);
  if (!user) throw new GatehouseError('not_found', { user: userId });
  if (user.source !== 'cloud')
    throw new GatehouseError('conflict', { reason: 'synced_user_password_on_premises' });
  const hash = await hashPassword(pw);
  await db
    .updateTable('users')
    .set({ password_hash: hash, updated_at: now })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', userId)
    .execute();
};

/** Replaces a hash made with older scrypt parameters, after a sign-in proved the password (no
 * updated_at: the account did not change). */
export const replacePasswordHash = async (db: Db, userId: string, hash: string): Promise<void> => {
  await db.updateTable('users').set({ password_hash: hash }).where('id', '=', userId).execute();
};

export interface SyncUpsertSummary {
  created: number;
  updated: number;
  /** Users that could not be applied, e.g. a UPN already held by a cloud-only account. */
  skipped: number;
  skippedUpns: string[];
  /** Ids of users this page turned from enabled to disabled (their grants are revoked). */
  disabledIds: string[];
}

/**
 * Applies one page of a sync run in one transaction. A UPN held by another user (a cloud-only
 * account, or another anchor) is skipped rather than taken over: a synced account must never
 * capture a cloud administrator (Entra blocks that soft match too). Two batched reads, then
 * batched writes (store/sync-plan.ts decides what each user needs).
 */
export const upsertSyncedUsers = async (
  db: Db,
  tenantId: string,
  users: SyncedUser[],
  now: number = Date.now(),
): Promise<SyncUpsertSummary> => {
  const tid = parse(TenantId, tenantId);
  const list = parse(z.array(SyncedUser).max(5000), users);
  return db.transaction().execute(async (trx) => {
    // One object per row, whichever read found it: the plan updates rows in place.
    const rows = new Map<string, KnownRow>();
    const byUpn = new Map<string, KnownRow>();
    const byAnchor = new Map<string, KnownRow>();
    const known = (r: KnownRow) => {
      const seen = rows.get(r.id);
      if (seen) return seen;
      rows.set(r.id, r);
      return r;
    };
    const columns = ['id', 'source_anchor', ...SYNC_COLUMNS] as const;
    for (const b of batches([...new Set(list.map((u) => syncFields(u).upn))]))
      for (const r of await trx
        .selectFrom('users')
        .select(columns)
        .where('tenant_id', '=', tid)
        .where('upn', 'in', b)
        .execute())
        byUpn.set(r.upn, known(r));
    for (const b of batches([...new Set(list.map((u) => u.anchor))]))
      for (const r of await trx
        .selectFrom('users')
        .select(columns)
        .where('tenant_id', '=', tid)
        .where('source_anchor', 'in', b)
        .execute())
        byAnchor.set(r.source_anchor!, known(r));
    const plan = planSyncedUsers(list, byUpn, byAnchor);
    for (const u of plan.updates)
      await trx
        .updateTable('users')
        .set({ ...u.fields, synced_at: now, updated_at: now })
        .where('id', '=', u.id)
        .execute();
    for (const b of batches(plan.touched))
      await trx.updateTable('users').set({ synced_at: now }).where('id', 'in', b).execute();
    // 16 values a row: 200 rows stay far below either engine's bound-parameter limit.
    for (const b of batches(plan.inserts, 200))
      await trx
        .insertInto('users')
        .values(
          b.map((r) => ({
            ...r,
            tenant_id: tid,
            source: 'synced',
            password_hash: null,
            roles: '[]',
            synced_at: now,
            created_at: now,
            updated_at: now,
          })),
        )
        .execute();
    return {
      created: plan.created,
      updated: plan.updated,
      skipped: plan.skippedUpns.length,
      skippedUpns: plan.skippedUpns,
      disabledIds: plan.disabledIds,
    };
  });
};

/** `IN (...)` lists and multi-row inserts are cut to this many items (bound-parameter limits). */
const batches = <T>(items: T[], size = 500): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

export const FinishSyncOptions = z.object({
  /** Fraction of the synced users above which deletions are refused (accidental-deletion guard). */
  deletionThreshold: z.number().min(0).max(1).default(0.2),
  /** Apply deletions even above the threshold (an administrator confirmed them). */
  force: z.boolean().default(false),
});

/** Ends a full sync run: synced users whose anchor was not seen are deleted, unless too many would go. */
export const finishSyncRun = async (
  db: Db,
  tenantId: string,
  seenAnchors: Iterable<string>,
  options: z.input<typeof FinishSyncOptions> = {},
): Promise<SyncDeletion> => {
  const seen = new Set(seenAnchors);
  return deleteSynced(db, tenantId, (anchor) => !seen.has(anchor), options);
};

/**
 * Ends a delta run: deletes the synced users it names (deleted in the directory), nothing by
 * absence; the same guard applies, against the tenant's synced users.
 */
export const deleteSyncedUsersByAnchor = (
  db: Db,
  tenantId: string,
  anchors: Iterable<string>,
  options: z.input<typeof FinishSyncOptions> = {},
): Promise<SyncDeletion> => {
  const named = new Set(anchors);
  return deleteSynced(db, tenantId, (anchor) => named.has(anchor), options);
};

export interface SyncDeletion {
  deleted: number;
  deletionGuarded: boolean;
  /** Ids of the users deleted (their grants are revoked). */
  deletedIds: string[];
}

const deleteSynced = async (
  db: Db,
  tenantId: string,
  goes: (anchor: string) => boolean,
  options: z.input<typeof FinishSyncOptions>,
): Promise<SyncDeletion> => {
  const o = parse(FinishSyncOptions, options);
  return db.transaction().execute(async (trx) => {
    const synced = await trx
      .selectFrom('users')
      .select(['id', 'source_anchor'])
      .where('tenant_id', '=', tenantId)
      .where('source', '=', 'synced')
      .execute();
    const gone = synced.filter((u) => goes(u.source_anchor ?? ''));
    if (gone.length === 0) return { deleted: 0, deletionGuarded: false, deletedIds: [] };
    if (!o.force && gone.length > o.deletionThreshold * synced.length)
      return { deleted: 0, deletionGuarded: true, deletedIds: [] };
    for (let i = 0; i < gone.length; i += 500) {
      const ids = gone.slice(i, i + 500).map((u) => u.id);
      await trx.deleteFrom('users').where('tenant_id', '=', tenantId).where('id', 'in', ids).execute();
    }
    return { deleted: gone.length, deletionGuarded: false, deletedIds: gone.map((u) => u.id) };
  });
};

/** The tenant's users by source ('cloud', 'synced'). */
export const countUsersBySource = async (db: Db, tenantId: string): Promise<Map<string, number>> => {
  const rows = await db
    .selectFrom('users')
    .select(['source', (eb) => eb.fn.countAll<number>().as('n')])
    .where('tenant_id', '=', tenantId)
    .groupBy('source')
    .execute();
  return new Map(rows.map((r) => [r.source, Number(r.n)]));
};
