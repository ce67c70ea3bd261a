/**
 * Group membership changes in a delta run. A user removed from a group leaves no trace on the
 * user (AD and OpenLDAP keep the member list on the group), so a delta cannot find who left by
 * reading changed users. It reads the changed groups instead (their uSNChanged or entryCSN moved
 * with `member`) and sends, for each group whose effective membership may have changed (the
 * changed groups and every group above them), its complete current list of users at any depth.
 * The cloud replaces those groups' memberships with these lists, so whoever is not listed left.
 *
 * Why the agent resolves and not the cloud: the cloud keeps transitive memberships only (tokens
 * never walk a graph), so resolving there would need a second table of direct edges kept exact by
 * every run. The agent reads every group's member list in a delta run anyway (to resolve the
 * changed users' groups), so walking down from the affected groups costs only the lookups of their
 * members' anchors: one search per LOOKUP_BATCH member DNs under each base DN, or one read of every
 * user's anchor there when the members are many (scanAfterFor).
 *
 * AD: a user's primary group (primaryGroupID, usually Domain Users) is not in its member list; the
 * users whose primary group is one of the walked groups are read by RID within the same domain.
 * The lists come from member lists, where a full run uses tokenGroups for security groups: the two
 * agree for the groups under the group base DNs (foreign security principals from other forests
 * are not followed by either).
 */
import type { Client } from 'ldapts';
import type { DirectoryConfig } from '../config.ts';
import { escapeFilterValue, type GroupEntry, guidToString, memberDn, normDn, sidToString } from './groups.ts';

/** Member DNs looked up per search (an OR filter this long stays well inside any server's limit). */
export const LOOKUP_BATCH = 200;
/**
 * When reading every user's anchor under a base DN is cheaper than the OR searches: past a third of
 * the users the last full run sent. Measured on Samba AD (2,000 users, a group of 1,999 changed):
 * the OR searches took 1.5 to 1.8 s (about 0.8 ms a DN), the read of every anchor 0.45 s (about
 * 0.23 ms a user). Without a count (no full run yet) the OR searches are used: their cost follows
 * the members, a read's the whole directory.
 */
export const scanAfterFor = (knownUsers: number | undefined): number =>
  knownUsers ? Math.max(LOOKUP_BATCH, Math.floor(knownUsers / 3)) : Number.POSITIVE_INFINITY;

const inScope = (dn: string, bases: string[]) => bases.some((b) => dn === b || dn.endsWith(`,${b}`));

const anchorOf = (e: Record<string, unknown>, cfg: DirectoryConfig): string | undefined => {
  const v = cfg.kind === 'ad' ? e.objectGUID : e.entryUUID;
  const x = Array.isArray(v) ? v[0] : v;
  if (cfg.kind === 'ad') return Buffer.isBuffer(x) && x.length === 16 ? guidToString(x) : undefined;
  return x === undefined || x === null ? undefined : String(x);
};

/** The affected groups: the changed ones and every group that holds one of them, at any depth. */
export const affectedGroups = (entries: GroupEntry[], changed: Set<string>): GroupEntry[] => {
  const parents = new Map<string, GroupEntry[]>();
  for (const g of entries)
    for (const m of g.members) {
      const k = normDn(memberDn(m));
      parents.set(k, [...(parents.get(k) ?? []), g]);
    }
  const out = new Set<GroupEntry>();
  const stack = entries.filter((g) => changed.has(g.group.anchor));
  while (stack.length > 0) {
    const g = stack.pop()!;
    if (out.has(g)) continue;
    out.add(g);
    stack.push(...(parents.get(normDn(g.group.dn)) ?? []));
  }
  return [...out];
};

/** The non-group member DNs of `top` at any depth (a visited set ends cycles), and the walked groups. */
export const walkDown = (
  top: GroupEntry,
  byDn: Map<string, GroupEntry>,
): { userDns: Set<string>; groups: GroupEntry[] } => {
  const userDns = new Set<string>();
  const seen = new Set<GroupEntry>([top]);
  const stack = [top];
  while (stack.length > 0) {
    for (const m of stack.pop()!.members) {
      const dn = normDn(memberDn(m));
      const g = byDn.get(dn);
      if (!g) userDns.add(dn);
      else if (!seen.has(g)) {
        seen.add(g);
        stack.push(g);
      }
    }
  }
  return { userDns, groups: [...seen] };
};

/** Anchors of the synced users among `dns` (normalised DNs), by batched searches under the base DNs. */
const lookupUsers = async (
  client: Client,
  cfg: DirectoryConfig,
  dns: Set<string>,
  scanAfter: number,
): Promise<Map<string, string>> => {
  const out = new Map<string, string>();
  const attr = cfg.kind === 'ad' ? 'distinguishedName' : 'entryDN';
  for (const base of cfg.baseDns) {
    const b = normDn(base);
    const mine = [...dns].filter((dn) => inScope(dn, [b]) && !out.has(dn));
    const scan = mine.length > scanAfter;
    for (let i = 0; i < (scan ? 1 : mine.length); i += LOOKUP_BATCH) {
      const or = mine
        .slice(i, i + LOOKUP_BATCH)
        .map((dn) => `(${attr}=${escapeFilterValue(dn)})`)
        .join('');
      for await (const page of client.searchPaginated(base, {
        scope: 'sub',
        filter: scan ? cfg.userFilter! : `(&${cfg.userFilter}(|${or}))`,
        attributes: [cfg.kind === 'ad' ? 'objectGUID' : 'entryUUID'],
        explicitBufferAttributes: cfg.kind === 'ad' ? ['objectGUID'] : [],
        paged: { pageSize: 500 },
      })) {
        for (const e of page.searchEntries) {
          const a = anchorOf(e, cfg);
          const dn = normDn(e.dn);
          if (a && dns.has(dn)) out.set(dn, a);
        }
      }
    }
  }
  return out;
};

const domainOfSid = (sid: string) => sid.replace(/-\d+$/, '');

/** AD: anchors of the users whose primary group is one of `groups`, by the group's SID. */
const primaryMembers = async (
  client: Client,
  cfg: DirectoryConfig,
  groups: Set<string>,
): Promise<Map<string, string[]>> => {
  const out = new Map<string, string[]>();
  const wanted = new Set([...groups].filter((sid) => /^S-1-5-21-/.test(sid)));
  if (cfg.kind !== 'ad' || wanted.size === 0) return out;
  const rids = [...new Set([...wanted].map((s) => s.slice(s.lastIndexOf('-') + 1)))];
  const filter = `(&${cfg.userFilter}(|${rids.map((r) => `(primaryGroupID=${r})`).join('')}))`;
  for (const base of cfg.baseDns) {
    for await (const page of client.searchPaginated(base, {
      scope: 'sub',
      filter,
      attributes: ['objectGUID', 'objectSid', 'primaryGroupID'],
      explicitBufferAttributes: ['objectGUID', 'objectSid'],
      paged: { pageSize: 500 },
    })) {
      for (const e of page.searchEntries) {
        const a = anchorOf(e, cfg);
        const s = Array.isArray(e.objectSid) ? e.objectSid[0] : e.objectSid;
        const userSid = Buffer.isBuffer(s) ? sidToString(s) : undefined;
        if (!a || !userSid) continue;
        // The RID is relative to the user's own domain.
        const groupSid = `${domainOfSid(userSid)}-${String(e.primaryGroupID)}`;
        if (!wanted.has(groupSid)) continue;
        out.set(groupSid, [...(out.get(groupSid) ?? []), a]);
      }
    }
  }
  return out;
};

/**
 * For each affected group (changed, or above a changed one), the anchors of its users at any
 * depth, as they are now. `entries` is every group read by this run; `changed` the anchors of the
 * groups changed since the mark. Throws on a failed read.
 */
export const groupMembersNow = async (
  client: Client,
  cfg: DirectoryConfig,
  entries: GroupEntry[],
  changed: Set<string>,
  scanAfter = Number.POSITIVE_INFINITY,
): Promise<Map<string, string[]>> => {
  const byDn = new Map(entries.map((g) => [normDn(g.group.dn), g]));
  const walks = affectedGroups(entries, changed).map((g) => ({ top: g, ...walkDown(g, byDn) }));
  const dns = new Set(walks.flatMap((w) => [...w.userDns]));
  const anchors = await lookupUsers(client, cfg, dns, scanAfter);
  const sids = new Set(walks.flatMap((w) => w.groups.map((g) => g.group.sid).filter((s) => s !== undefined)));
  const primary = await primaryMembers(client, cfg, sids);
  const out = new Map<string, string[]>();
  for (const w of walks) {
    const users = new Set<string>();
    for (const dn of w.userDns) {
      const a = anchors.get(dn);
      if (a) users.add(a);
    }
    for (const g of w.groups) for (const a of primary.get(g.group.sid ?? '') ?? []) users.add(a);
    out.set(w.top.group.anchor, [...users]);
  }
  return out;
};
