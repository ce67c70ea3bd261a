/**
 * Directory groups for sync, with each user's nested membership resolved on premises.
 *
 * AD: security and distribution groups (groupType), objectGUID anchor, objectSid. Security
 * groups come from each user's tokenGroups (one base read per user; the DC expands nesting as it
 * does for a logon token). tokenGroups holds security groups only, so distribution groups are
 * resolved from the groups' member lists, as on OpenLDAP (ranged `member` values are read to the
 * end). LDAP_MATCHING_RULE_IN_CHAIN was measured first and is three orders of magnitude slower on
 * Samba (bench/group-nesting.ts: 1.1 s per group against 1 ms per user).
 *
 * OpenLDAP: groupOfNames (member) and groupOfUniqueNames (uniqueMember), entryUUID anchor. The
 * memberOf overlay lists direct groups only and is often absent, so nesting is resolved here from
 * the groups' member lists: upward from each user with a visited set, so a cycle ends.
 */
import type { SyncedGroup } from '@gatehouse/protocol';
import { MAX_GROUPS_PER_USER } from '@gatehouse/protocol';
import type { Client, Entry } from 'ldapts';
import type { DirectoryConfig } from '../config.ts';
import { heapCheckpoint } from '../heap.ts';
import { Nesting } from './nesting.ts';

/** LDAP_MATCHING_RULE_IN_CHAIN's OID: measured against tokenGroups (bench/group-nesting.ts), not used by sync. */
export const IN_CHAIN = '1.2.840.113556.1.4.1941';

const first = (v: unknown): string | undefined => {
  const x = Array.isArray(v) ? v[0] : v;
  if (x === undefined || x === null) return undefined;
  return Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
};
const all = (v: unknown): string[] =>
  (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]).map((x) =>
    Buffer.isBuffer(x) ? x.toString('utf8') : String(x),
  );
const buffer = (v: unknown): Buffer | undefined => {
  const x = Array.isArray(v) ? v[0] : v;
  return Buffer.isBuffer(x) ? x : undefined;
};

export { normDn } from './nesting.ts';

/** AD objectGUID bytes -> the usual string form (first three groups little-endian). */
export const guidToString = (b: Buffer): string => {
  const h = (i: number) => b[i]!.toString(16).padStart(2, '0');
  return [
    [3, 2, 1, 0].map(h).join(''),
    [5, 4].map(h).join(''),
    [7, 6].map(h).join(''),
    [8, 9].map(h).join(''),
    [10, 11, 12, 13, 14, 15].map(h).join(''),
  ].join('-');
};

/** A binary SID (MS-DTYP 2.4.2) -> S-1-5-21-...; undefined when malformed. */
export const sidToString = (b: Buffer): string | undefined => {
  if (b.length < 8) return undefined;
  const count = b[1]!;
  if (b.length !== 8 + 4 * count) return undefined;
  const authority = b.readUIntBE(2, 6);
  const subs: number[] = [];
  for (let i = 0; i < count; i++) subs.push(b.readUInt32LE(8 + 4 * i));
  return ['S', b[0], authority, ...subs].join('-');
};

/** RFC 4515 escaping of a value put in a search filter (a DN in an IN_CHAIN filter). */
export const escapeFilterValue = (v: string): string =>
  v.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

/** groupType bit 0x80000000: a security group (otherwise distribution). */
export const isSecurityGroup = (groupType: number): boolean => (groupType & 0x80000000) !== 0;

export const groupAttributes = (cfg: DirectoryConfig): string[] =>
  cfg.kind === 'ad'
    ? ['objectGUID', 'objectSid', 'cn', 'sAMAccountName', 'groupType', 'description', 'member']
    : ['entryUUID', 'cn', 'member', 'uniqueMember', 'description'];

/** One group entry -> SyncedGroup (without members), or null when it has no anchor. */
export const toSyncedGroup = (e: Entry, cfg: DirectoryConfig, netbios?: string): SyncedGroup | null => {
  const name = first(e.cn) ?? first(e.sAMAccountName);
  let g: SyncedGroup;
  if (cfg.kind === 'ad') {
    const guid = buffer(e.objectGUID);
    const sid = buffer(e.objectSid);
    const sam = first(e.sAMAccountName);
    if (guid?.length !== 16 || !name) return null;
    g = {
      anchor: guidToString(guid),
      name,
      dn: e.dn,
      security: isSecurityGroup(Number(first(e.groupType) ?? 0)),
      ...(sam ? { onPremName: netbios ? `${netbios}\\${sam}` : sam } : {}),
      ...(sid && sidToString(sid) ? { sid: sidToString(sid) } : {}),
    };
  } else {
    const anchor = first(e.entryUUID);
    if (!anchor || !name) return null;
    g = { anchor, name, dn: e.dn, security: true };
  }
  const description = first(e.description);
  if (description) g.description = description.slice(0, 1024);
  return g;
};

/** uniqueMember values may carry an optional `#'0101'B` unique identifier after the DN. */
export const memberDn = (v: string) => v.replace(/#'[01]*'B$/, '');

/**
 * OpenLDAP: every group each user is in, at any depth, from the groups' direct member lists.
 * `users` maps a user's normalised DN to its anchor; `groups` are the group entries read.
 */
export const resolveNested = (
  groups: { anchor: string; dn: string; members: string[] }[],
  users: Map<string, string>,
): Map<string, string[]> => {
  const n = new Nesting(users);
  for (const g of groups) n.addMembers(n.addGroup(g.anchor, g.dn), g.members);
  return n.resolve();
};

export interface GroupsResult {
  groups: SyncedGroup[];
  /** User anchor -> anchors of every group the user is in. */
  memberships: Map<string, string[]>;
  /** Users whose group list was cut at MAX_GROUPS_PER_USER. */
  truncated: number;
  /** Group entries without an anchor. */
  skipped: number;
}

/** A group as read, with its direct member DNs (ranged values read to the end). */
export interface GroupEntry {
  group: SyncedGroup;
  members: string[];
}

const GROUP_PAGE_SIZE = 50;

/**
 * Every group under the group base DNs with its direct members. Throws on any failure. Given
 * `nesting`, the members go there page by page and the entries keep none (a full run's member
 * lists are the biggest thing it would otherwise hold: 100,000 users in 3 groups each, ~25 MB).
 */
export const readGroupEntries = async (
  client: Client,
  cfg: DirectoryConfig,
  opts: { pageSize: number; netbios?: (dn: string) => string | undefined },
  nesting?: Nesting,
): Promise<{ entries: GroupEntry[]; skipped: number }> => {
  const bases = cfg.groupBaseDns ?? cfg.baseDns;
  const filter = cfg.groupFilter ?? '(objectClass=group)';
  const entries: GroupEntry[] = [];
  const byAnchor = new Set<string>();
  const rangedFrom = new Map<string, { dn: string; key: string }>();
  let skipped = 0;
  for (const base of bases) {
    // Page by page: a page's entries are dropped once their groups and members are taken.
    for await (const page of client.searchPaginated(base, {
      scope: 'sub',
      filter,
      attributes: groupAttributes(cfg),
      explicitBufferAttributes: cfg.kind === 'ad' ? ['objectGUID', 'objectSid'] : [],
      // Groups carry their member lists: fewer a page keeps each page's parse small.
      paged: { pageSize: Math.min(opts.pageSize, GROUP_PAGE_SIZE) },
    })) {
      heapCheckpoint();
      for (const e of page.searchEntries) {
        const g = toSyncedGroup(e, cfg, opts.netbios?.(e.dn));
        if (!g) skipped++;
        else if (!byAnchor.has(g.anchor)) {
          byAnchor.add(g.anchor);
          const members = [...all(e.member), ...all(e.uniqueMember)].map(memberDn);
          // AD hands out large `member` values in ranges (1,500 at a time on Windows).
          const ranged = Object.keys(e).find((k) => /^member;range=/i.test(k));
          if (ranged) {
            members.push(...all(e[ranged]));
            rangedFrom.set(g.anchor, { dn: e.dn, key: ranged });
          }
          if (nesting) nesting.addMembers(nesting.addGroup(g.anchor, g.dn), members);
          entries.push({ group: g, members: nesting ? [] : members });
        }
      }
    }
  }
  if (cfg.kind === 'ad') {
    for (const [i, x] of entries.entries()) {
      const e = rangedFrom.get(x.group.anchor);
      if (!e) continue;
      const rest = await rangedMembers(client, e.dn, e.key);
      if (nesting) nesting.addMembers(i, rest);
      else x.members.push(...rest);
    }
  }
  return { entries, skipped };
};

/** A full run's read: the members go into the nesting as they come, never all held at once. */
const readAndResolve = async (
  client: Client,
  cfg: DirectoryConfig,
  opts: { pageSize: number; netbios?: (dn: string) => string | undefined },
  users: Map<string, string>,
) => {
  const nesting = new Nesting(users);
  const read = await readGroupEntries(client, cfg, opts, nesting);
  return { ...read, local: nesting.resolve() };
};

/**
 * Reads the groups under the group base DNs (unless `read` already holds them) and resolves every
 * user's nested membership. `users` maps each synced user's normalised DN to its anchor. Throws on
 * any failure, like the user search, so a half-read directory never reaches the cloud as a
 * complete one.
 */
export const collectGroups = async (
  client: Client,
  cfg: DirectoryConfig,
  users: Map<string, string>,
  opts: {
    pageSize: number;
    netbios?: (dn: string) => string | undefined;
    /** More connections to the same server for the tokenGroups reads (AD). */
    tokenGroupClients?: Client[];
  },
  read?: { entries: GroupEntry[]; skipped: number },
): Promise<GroupsResult> => {
  const { entries, skipped, local } = read
    ? {
        ...read,
        local: resolveNested(
          read.entries.map((x) => ({ anchor: x.group.anchor, dn: x.group.dn, members: x.members })),
          users,
        ),
      }
    : await readAndResolve(client, cfg, opts, users);
  const groups = entries.map((x) => x.group);
  const memberships =
    cfg.kind === 'ad'
      ? await tokenGroupMemberships([client, ...(opts.tokenGroupClients ?? [])], groups, users, local)
      : local;
  let truncated = 0;
  for (const [anchor, list] of memberships) {
    if (list.length > MAX_GROUPS_PER_USER) {
      memberships.set(anchor, list.slice(0, MAX_GROUPS_PER_USER));
      truncated++;
    }
  }
  return { groups, memberships, truncated, skipped };
};

/** The rest of a ranged `member` attribute, after the range `key` (`member;range=0-1499`). */
const rangedMembers = async (client: Client, dn: string, key: string): Promise<string[]> => {
  const out: string[] = [];
  let last = key;
  for (let guard = 0; guard < 10_000; guard++) {
    const m = /range=(\d+)-(\d+|\*)$/i.exec(last);
    if (!m || m[2] === '*') return out;
    const from = Number(m[2]) + 1;
    const r = await client.search(dn, { scope: 'base', attributes: [`member;range=${from}-*`] });
    const e = r.searchEntries[0];
    const next = e && Object.keys(e).find((k) => /^member;range=/i.test(k));
    if (!e || !next) return out;
    out.push(...all(e[next]));
    last = next;
  }
  return out;
};

/**
 * tokenGroups reads in flight at once, spread over the connections given. One at a time, each
 * waited a round trip and the agent's parse of the answer with the DC idle; a few pipelined keep
 * it busy. Samba answers one connection's requests one after another in one process, so a second
 * connection is what lets a second core of the DC work.
 */
export const TOKEN_GROUPS_IN_FLIGHT = 4;

/**
 * AD: security groups from each user's tokenGroups (transitive, expanded by the DC), distribution
 * groups from the member lists (`local`), which tokenGroups never holds. The first failed read
 * fails the whole; no further reads start after it.
 */
export const tokenGroupMemberships = async (
  clients: Client[],
  groups: SyncedGroup[],
  users: Map<string, string>,
  local: Map<string, string[]>,
  inFlight = TOKEN_GROUPS_IN_FLIGHT,
): Promise<Map<string, string[]>> => {
  const bySid = new Map(groups.filter((g) => g.sid).map((g) => [g.sid!, g.anchor]));
  const distribution = new Set(groups.filter((g) => !g.security).map((g) => g.anchor));
  // One iterator shared by the workers, so the 100,000 users are not copied once more.
  const todo = users.entries();
  const lists: string[][] = [];
  let next = 0;
  let failed = false;
  const worker = async (w: number) => {
    const client = clients[w % clients.length]!;
    for (let t = todo.next(); !failed && !t.done; t = todo.next()) {
      const i = next++;
      const [dn, anchor] = t.value;
      try {
        const r = await client.search(dn, {
          scope: 'base',
          attributes: ['tokenGroups'],
          explicitBufferAttributes: ['tokenGroups'],
        });
        const tg = r.searchEntries[0]?.tokenGroups;
        const sids = (Array.isArray(tg) ? tg : tg ? [tg] : []).filter(Buffer.isBuffer).map(sidToString);
        const found = new Set(sids.map((x) => (x ? bySid.get(x) : undefined)).filter((a) => a !== undefined));
        for (const a of local.get(anchor) ?? []) if (distribution.has(a)) found.add(a);
        lists[i] = [...found];
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const workers = Math.max(1, Math.min(inFlight, users.size));
  await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  // In the users' order, as the sequential read gave them.
  const out = new Map<string, string[]>();
  let i = 0;
  for (const anchor of users.values()) out.set(anchor, lists[i++]!);
  return out;
};
