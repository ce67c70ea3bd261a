/**
 * What one sync page does to the users table, decided in memory from two batched reads (the rows
 * holding the page's UPNs and the rows with its anchors), so store/users.ts writes a page with a
 * few batched statements instead of three statements per user (100,000 users: docs/benchmarks.md).
 *
 * Users are decided in page order against the state the earlier ones left, exactly as one
 * statement at a time would see it: a UPN taken earlier in the page is taken, an anchor inserted
 * earlier is updated. The writes then run as: changed rows one by one in page order, unchanged
 * rows' synced_at in batched statements, then the inserts in batched multi-row statements. That order never breaks the (tenant, upn)
 * uniqueness: an insert only takes a UPN no row held or was given, and no later update takes it.
 */
import { randomUUID } from 'node:crypto';
import type { SyncedUser } from '@gatehouse/protocol';

/** The columns a synced user's directory entry sets. */
export interface SyncFields {
  upn: string;
  display_name: string | null;
  mail: string | null;
  enabled: number;
  on_prem_name: string | null;
  on_prem_dn: string;
}

/** What the plan needs of an existing row. */
export interface KnownRow extends Omit<SyncFields, 'on_prem_dn'> {
  on_prem_dn: string | null;
  id: string;
  source_anchor: string | null;
}

export interface SyncPlan {
  inserts: (SyncFields & { id: string; source_anchor: string })[];
  /** Rows whose fields changed, in page order (each gets updated_at too). */
  updates: { id: string; fields: SyncFields }[];
  /** Rows seen unchanged (only synced_at moves). */
  touched: string[];
  created: number;
  updated: number;
  skippedUpns: string[];
  disabledIds: string[];
}

export const syncFields = (u: SyncedUser): SyncFields => ({
  upn: u.upn.trim().toLowerCase(),
  display_name: u.displayName ?? null,
  mail: u.mail ? u.mail.trim().toLowerCase() : null,
  enabled: u.enabled ? 1 : 0,
  on_prem_name: u.onPremName ?? null,
  on_prem_dn: u.dn,
});

export const SYNC_COLUMNS = ['upn', 'display_name', 'mail', 'enabled', 'on_prem_name', 'on_prem_dn'] as const;

/**
 * `byUpn`: rows holding any of the page's UPNs; `byAnchor`: rows with any of its anchors (both
 * read in the page's transaction). Both maps are updated as the page goes.
 */
export const planSyncedUsers = (
  users: SyncedUser[],
  byUpn: Map<string, KnownRow>,
  byAnchor: Map<string, KnownRow>,
): SyncPlan => {
  const plan: SyncPlan = {
    inserts: [],
    updates: [],
    touched: [],
    created: 0,
    updated: 0,
    skippedUpns: [],
    disabledIds: [],
  };
  const pending = new Map<string, SyncPlan['inserts'][number]>();
  for (const u of users) {
    const fields = syncFields(u);
    const holder = byUpn.get(fields.upn);
    const existing = byAnchor.get(u.anchor);
    if (holder && holder.source_anchor !== u.anchor) {
      plan.skippedUpns.push(fields.upn);
      continue;
    }
    if (!existing) {
      const row = { id: randomUUID(), source_anchor: u.anchor, ...fields };
      plan.inserts.push(row);
      pending.set(row.id, row);
      byUpn.set(fields.upn, row);
      byAnchor.set(u.anchor, row);
      plan.created++;
      continue;
    }
    const changed = SYNC_COLUMNS.some((k) => existing[k] !== fields[k]);
    if (existing.enabled === 1 && fields.enabled === 0) plan.disabledIds.push(existing.id);
    if (changed) {
      plan.updated++;
      // An anchor listed twice gets a second update, in its place, as a second statement would.
      const insert = pending.get(existing.id);
      if (insert) Object.assign(insert, fields);
      else plan.updates.push({ id: existing.id, fields });
      if (byUpn.get(existing.upn) === existing) byUpn.delete(existing.upn);
      Object.assign(existing, fields);
      byUpn.set(fields.upn, existing);
    } else if (!pending.has(existing.id)) plan.touched.push(existing.id);
  }
  return plan;
};
