/**
 * The cloud directory's groups (synced from on premises, keyed by their immutable anchor) and
 * each synced user's memberships. Memberships are transitive: the agent resolves nesting on
 * premises and sends every group a user is in, so tokens never walk a graph. Everything here is
 * applied a page at a time, so a delta run can use the same calls with fewer items.
 */
import { randomUUID } from 'node:crypto';
import { SyncedGroup, type SyncedUser, TenantId } from '@gatehouse/protocol';
import { type Insertable, type Selectable, sql } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { GroupTable } from '../db/schema.ts';
import { parse } from './util.ts';

export interface Group {
  id: string;
  tenantId: string;
  name: string;
  /** AD: NETBIOS\name. */
  onPremName: string | null;
  /** AD: the group's SID (S-1-5-...). */
  onPremSid: string | null;
  dn: string;
  /** Security group (may grant access); false for an AD distribution group. */
  security: boolean;
  description: string | null;
  sourceAnchor: string;
  syncedAt: number;
  createdAt: number;
  updatedAt: number;
}

const toGroup = (r: Selectable<GroupTable>): Group => ({
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  onPremName: r.on_prem_name,
  onPremSid: r.on_prem_sid,
  dn: r.dn,
  security: r.security === 1,
  description: r.description,
  sourceAnchor: r.source_anchor,
  syncedAt: Number(r.synced_at),
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

/** `IN (...)` lists are cut to this many values (SQLite's bound-parameter limit, PostgreSQL's plan size). */
const BATCH = 500;
const batches = <T>(items: T[]): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += BATCH) out.push(items.slice(i, i + BATCH));
  return out;
};

/** users.id by source anchor, for the tenant's users among `anchors` (the others are absent). */
const userIdsByAnchor = async (db: Db, tid: string, anchors: string[]): Promise<Map<string, string>> => {
  const ids = new Map<string, string>();
  for (const b of batches(anchors)) {
    const rows = await db
      .selectFrom('users')
      .select(['id', 'source_anchor'])
      .where('tenant_id', '=', tid)
      .where('source_anchor', 'in', b)
      .execute();
    for (const r of rows) if (r.source_anchor) ids.set(r.source_anchor, r.id);
  }
  return ids;
};

/** groups.id by source anchor, for the tenant's groups among `anchors`. */
const groupIdsByAnchor = async (db: Db, tid: string, anchors: string[]): Promise<Map<string, string>> => {
  const ids = new Map<string, string>();
  for (const b of batches(anchors)) {
    const rows = await db
      .selectFrom('groups')
      .select(['id', 'source_anchor'])
      .where('tenant_id', '=', tid)
      .where('source_anchor', 'in', b)
      .execute();
    for (const r of rows) ids.set(r.source_anchor, r.id);
  }
  return ids;
};

export interface GroupUpsertSummary {
  created: number;
  updated: number;
}

/** Applies one page of groups in one transaction (new anchors inserted, changed ones updated). */
export const upsertSyncedGroups = async (
  db: Db,
  tenantId: string,
  groups: SyncedGroup[],
  now: number = Date.now(),
): Promise<GroupUpsertSummary> => {
  const tid = parse(TenantId, tenantId);
  const list = parse(z.array(SyncedGroup).max(5000), groups);
  const summary: GroupUpsertSummary = { created: 0, updated: 0 };
  if (list.length === 0) return summary;
  await db.transaction().execute(async (trx) => {
    const existing = new Map<string, Selectable<GroupTable>>();
    for (const b of batches(list.map((g) => g.anchor))) {
      const rows = await trx
        .selectFrom('groups')
        .selectAll()
        .where('tenant_id', '=', tid)
        .where('source_anchor', 'in', b)
        .execute();
      for (const r of rows) existing.set(r.source_anchor, r);
    }
    const seen = new Set<string>();
    const inserts: Insertable<GroupTable>[] = [];
    for (const g of list) {
      if (seen.has(g.anchor)) continue;
      seen.add(g.anchor);
      const fields = {
        name: g.name,
        on_prem_name: g.onPremName ?? null,
        on_prem_sid: g.sid ?? null,
        dn: g.dn,
        security: g.security ? 1 : 0,
        description: g.description ?? null,
      };
      const old = existing.get(g.anchor);
      if (old) {
        const changed = (Object.keys(fields) as (keyof typeof fields)[]).some((k) => old[k] !== fields[k]);
        await trx
          .updateTable('groups')
          .set({ ...fields, synced_at: now, ...(changed ? { updated_at: now } : {}) })
          .where('id', '=', old.id)
          .execute();
        if (changed) summary.updated++;
      } else {
        inserts.push({
          id: randomUUID(),
          tenant_id: tid,
          source_anchor: g.anchor,
          synced_at: now,
          created_at: now,
          updated_at: now,
          ...fields,
        });
        summary.created++;
      }
    }
    // Multi-row inserts: one statement per 100 groups rather than one per group.
    for (let i = 0; i < inserts.length; i += 100)
      await trx
        .insertInto('groups')
        .values(inserts.slice(i, i + 100))
        .execute();
  });
  return summary;
};

/**
 * Sets the memberships of the page's users to exactly the groups each one names (users without a
 * `groups` list are left alone: their agent does not sync groups). Anchors of groups the cloud
 * does not know are ignored. Returns how many users' memberships changed.
 */
export const applyMemberships = async (
  db: Db,
  tenantId: string,
  users: Pick<SyncedUser, 'anchor' | 'groups'>[],
): Promise<{ changedUsers: number }> => {
  const tid = parse(TenantId, tenantId);
  const withGroups = users.filter((u) => u.groups !== undefined);
  if (withGroups.length === 0) return { changedUsers: 0 };
  return db.transaction().execute(async (trx) => {
    const userIds = await userIdsByAnchor(
      trx,
      tid,
      withGroups.map((u) => u.anchor),
    );
    const groupIds = await groupIdsByAnchor(trx, tid, [
      ...new Set(withGroups.flatMap((u) => u.groups ?? [])),
    ]);
    const current = new Map<string, Set<string>>();
    for (const b of batches([...userIds.values()])) {
      const rows = await trx
        .selectFrom('group_members')
        .select(['user_id', 'group_id'])
        .where('tenant_id', '=', tid)
        .where('user_id', 'in', b)
        .execute();
      for (const r of rows) {
        const s = current.get(r.user_id) ?? new Set<string>();
        s.add(r.group_id);
        current.set(r.user_id, s);
      }
    }
    const adds: { tenant_id: string; group_id: string; user_id: string }[] = [];
    let changedUsers = 0;
    for (const u of withGroups) {
      const userId = userIds.get(u.anchor);
      if (!userId) continue;
      const want = new Set((u.groups ?? []).map((a) => groupIds.get(a)).filter((g) => g !== undefined));
      const have = current.get(userId) ?? new Set<string>();
      const removed = [...have].filter((g) => !want.has(g));
      const added = [...want].filter((g) => !have.has(g));
      if (removed.length + added.length > 0) changedUsers++;
      for (const b of batches(removed)) {
        await trx
          .deleteFrom('group_members')
          .where('user_id', '=', userId)
          .where('group_id', 'in', b)
          .execute();
      }
      for (const g of added) adds.push({ tenant_id: tid, group_id: g, user_id: userId });
    }
    for (const b of batches(adds)) await trx.insertInto('group_members').values(b).execute();
    return { changedUsers };
  });
};

/**
 * Delta runs: sets the members of each named group (by anchor) to exactly the listed users (by
 * anchor), in one transaction. Groups and users the cloud does not know are ignored. Returns how
 * many users gained or lost one of these groups.
 */
export const replaceGroupMemberships = async (
  db: Db,
  tenantId: string,
  members: Map<string, Set<string>>,
): Promise<{ changedUsers: number }> => {
  const tid = parse(TenantId, tenantId);
  if (members.size === 0) return { changedUsers: 0 };
  return db.transaction().execute(async (trx) => {
    const groupIds = await groupIdsByAnchor(trx, tid, [...members.keys()]);
    const userIds = await userIdsByAnchor(trx, tid, [
      ...new Set([...members.values()].flatMap((u) => [...u])),
    ]);
    const changed = new Set<string>();
    for (const [anchor, users] of members) {
      const groupId = groupIds.get(anchor);
      if (!groupId) continue;
      const want = new Set([...users].map((a) => userIds.get(a)).filter((u) => u !== undefined));
      const have = new Set(
        (
          await trx
            .selectFrom('group_members')
            .select('user_id')
            .where('tenant_id', '=', tid)
            .where('group_id', '=', groupId)
            .execute()
        ).map((r) => r.user_id),
      );
      const removed = [...have].filter((u) => !want.has(u));
      const added = [...want].filter((u) => !have.has(u));
      for (const b of batches(removed))
        await trx
          .deleteFrom('group_members')
          .where('group_id', '=', groupId)
          .where('user_id', 'in', b)
          .execute();
      for (const b of batches(added))
        await trx
          .insertInto('group_members')
          .values(b.map((user_id) => ({ tenant_id: tid, group_id: groupId, user_id })))
          .execute();
      for (const u of [...removed, ...added]) changed.add(u);
    }
    return { changedUsers: changed.size };
  });
};

export const FinishGroupSyncOptions = z.object({
  /** Fraction of the synced groups above which deletions are refused (accidental-deletion guard). */
  deletionThreshold: z.number().min(0).max(1).default(0.2),
  force: z.boolean().default(false),
});

/** Ends a full run that carried groups: groups not seen are deleted, unless too many would go. */
export const finishGroupSync = async (
  db: Db,
  tenantId: string,
  seenAnchors: Iterable<string>,
  options: z.input<typeof FinishGroupSyncOptions> = {},
): Promise<{ deleted: number; deletionGuarded: boolean }> => {
  const o = parse(FinishGroupSyncOptions, options);
  const seen = new Set(seenAnchors);
  return db.transaction().execute(async (trx) => {
    const all = await trx
      .selectFrom('groups')
      .select(['id', 'source_anchor'])
      .where('tenant_id', '=', tenantId)
      .execute();
    const gone = all.filter((g) => !seen.has(g.source_anchor));
    if (gone.length === 0) return { deleted: 0, deletionGuarded: false };
    if (!o.force && gone.length > o.deletionThreshold * all.length)
      return { deleted: 0, deletionGuarded: true };
    // Memberships go with their group (foreign key cascade).
    for (const b of batches(gone.map((g) => g.id)))
      await trx.deleteFrom('groups').where('tenant_id', '=', tenantId).where('id', 'in', b).execute();
    return { deleted: gone.length, deletionGuarded: false };
  });
};

export const ListGroupsOptions = z.object({
  /** Matches the start of the name or the on-premises name, case-insensitively. */
  search: z.string().trim().max(256).optional(),
  limit: z.number().int().min(1).max(1000).default(100),
  /** `nextCursor` of the previous page. */
  cursor: z.string().max(512).optional(),
});

/** Groups ordered by name (then id), a page at a time. */
export const listGroups = async (
  db: Db,
  tenantId: string,
  options: z.input<typeof ListGroupsOptions> = {},
): Promise<{ groups: (Group & { members: number })[]; nextCursor: string | null }> => {
  const o = parse(ListGroupsOptions, options);
  let q = db
    .selectFrom('groups')
    .selectAll('groups')
    .select((eb) =>
      eb
        .selectFrom('group_members')
        .select(eb.fn.countAll<number>().as('n'))
        .whereRef('group_members.group_id', '=', 'groups.id')
        .as('members'),
    )
    .where('tenant_id', '=', tenantId);
  if (o.search) {
    const pattern = `${o.search.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    q = q.where(
      sql<boolean>`(lower(name) LIKE ${pattern} ESCAPE '\\' OR lower(on_prem_name) LIKE ${pattern} ESCAPE '\\')`,
    );
  }
  if (o.cursor) {
    const [name, id] = JSON.parse(Buffer.from(o.cursor, 'base64url').toString()) as [string, string];
    q = q.where((eb) => eb.or([eb('name', '>', name), eb.and([eb('name', '=', name), eb('id', '>', id)])]));
  }
  const rows = await q
    .orderBy('name')
    .orderBy('id')
    .limit(o.limit + 1)
    .execute();
  const page = rows.slice(0, o.limit).map((r) => ({ ...toGroup(r), members: Number(r.members ?? 0) }));
  const last = page.at(-1);
  return {
    groups: page,
    nextCursor:
      rows.length > o.limit && last
        ? Buffer.from(JSON.stringify([last.name, last.id])).toString('base64url')
        : null,
  };
};

export const getGroup = async (db: Db, tenantId: string, groupId: string): Promise<Group | null> => {
  const r = await db
    .selectFrom('groups')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', groupId)
    .executeTakeFirst();
  return r ? toGroup(r) : null;
};

/** Every group the user is in (nested membership included), by name. */
export const groupsOfUser = async (db: Db, tenantId: string, userId: string): Promise<Group[]> => {
  const rows = await db
    .selectFrom('group_members')
    .innerJoin('groups', 'groups.id', 'group_members.group_id')
    .selectAll('groups')
    .where('group_members.tenant_id', '=', tenantId)
    .where('group_members.user_id', '=', userId)
    .orderBy('groups.name')
    .execute();
  return rows.map(toGroup);
};

/** How many groups the tenant has (overview). */
export const countGroups = async (db: Db, tenantId: string): Promise<number> => {
  const r = await db
    .selectFrom('groups')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return Number(r?.n ?? 0);
};
