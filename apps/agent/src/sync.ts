/**
 * Directory sync: a paged search under every base DN with the service account, mapped to the
 * cloud's SyncedUser, then the groups with each user's nested membership (directory/groups.ts).
 * Everything is read before anything is sent, so a search that fails half way never becomes a
 * "final" page that would delete the rest in the cloud.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type SyncedGroup, type SyncedUser, SyncedUser as SyncedUserSchema } from '@gatehouse/protocol';
import type { Client, Entry } from 'ldapts';
import type { DirectoryConfig } from './config.ts';
import { close } from './directory/deadline.ts';
import { collectGroups, type GroupsResult, normDn as normGroupDn } from './directory/groups.ts';
import type { Directory } from './directory/index.ts';
import { heapCheckpoint } from './heap.ts';
import { writeFileAtomic } from './state.ts';

const first = (v: unknown): string | undefined => {
  const x = Array.isArray(v) ? v[0] : v;
  if (x === undefined || x === null) return undefined;
  return Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
};

/** AD objectGUID bytes -> the usual string form (first three groups little-endian). */
export const guidToString = (b: Buffer): string => {
  const h = (i: number) => b[i].toString(16).padStart(2, '0');
  return [
    [3, 2, 1, 0].map(h).join(''),
    [5, 4].map(h).join(''),
    [7, 6].map(h).join(''),
    [8, 9].map(h).join(''),
    [10, 11, 12, 13, 14, 15].map(h).join(''),
  ].join('-');
};

export const syncAttributes = (cfg: DirectoryConfig): string[] =>
  cfg.kind === 'ad'
    ? ['objectGUID', 'userPrincipalName', 'sAMAccountName', 'displayName', 'mail', 'userAccountControl']
    : ['entryUUID', 'uid', 'cn', 'displayName', 'mail', 'pwdAccountLockedTime', cfg.upnAttribute ?? 'mail'];

const normDn = (dn: string) => dn.toLowerCase().replace(/\s*,\s*/g, ',');

/**
 * AD: NetBIOS domain names by naming context, from the crossRef objects under
 * CN=Partitions,<configuration NC> (readable by any authenticated user).
 */
export const readNetbiosDomains = async (c: Client): Promise<Map<string, string>> => {
  const dse = await c.search('', { scope: 'base', attributes: ['configurationNamingContext'] });
  const conf = first(dse.searchEntries[0]?.configurationNamingContext);
  const out = new Map<string, string>();
  if (!conf) return out;
  const r = await c.search(`CN=Partitions,${conf}`, {
    scope: 'one',
    filter: '(&(objectClass=crossRef)(nETBIOSName=*))',
    attributes: ['nCName', 'nETBIOSName'],
  });
  for (const e of r.searchEntries) {
    const nc = first(e.nCName);
    const nb = first(e.nETBIOSName);
    if (nc && nb) out.set(normDn(nc), nb);
  }
  return out;
};

/** The NetBIOS domain of the entry `dn`: configured, else the longest naming context that holds it. */
export const netbiosFor = (dn: string, cfg: DirectoryConfig, domains?: Map<string, string>) => {
  if (cfg.netbiosDomain) return cfg.netbiosDomain;
  const d = normDn(dn);
  let best: [string, string] | undefined;
  for (const [nc, nb] of domains ?? []) {
    if ((d === nc || d.endsWith(`,${nc}`)) && nc.length > (best?.[0].length ?? -1)) best = [nc, nb];
  }
  return best?.[1];
};

/** One directory entry -> SyncedUser, or null when it has no anchor or no usable UPN. */
export const toSyncedUser = (
  e: Entry,
  cfg: DirectoryConfig,
  domains?: Map<string, string>,
): SyncedUser | null => {
  let user: Record<string, unknown>;
  if (cfg.kind === 'ad') {
    const guid = Array.isArray(e.objectGUID) ? e.objectGUID[0] : e.objectGUID;
    const sam = first(e.sAMAccountName);
    const uac = Number(first(e.userAccountControl) ?? 0);
    const netbios = netbiosFor(e.dn, cfg, domains);
    user = {
      anchor: Buffer.isBuffer(guid) && guid.length === 16 ? guidToString(guid) : undefined,
      upn: first(e.userPrincipalName),
      // The cloud matches the DOMAIN\name sign-in form against this; AD accepts it as a bind name.
      onPremName: sam && netbios ? `${netbios}\\${sam}` : sam,
      displayName: first(e.displayName),
      enabled: (uac & 2) === 0,
    };
  } else {
    const attr = cfg.upnAttribute ?? 'mail';
    let upn = first(e[attr]);
    if (upn && !upn.includes('@') && cfg.upnDomain) upn = `${upn}@${cfg.upnDomain}`;
    user = {
      anchor: first(e.entryUUID),
      upn,
      onPremName: first(e.uid),
      displayName: first(e.displayName) ?? first(e.cn),
      // "000001010000Z" is ppolicy's administrative lock: the account is disabled.
      enabled: first(e.pwdAccountLockedTime) !== '000001010000Z',
    };
  }
  user.dn = e.dn;
  user.mail = first(e.mail);
  for (const k of Object.keys(user)) if (user[k] === undefined) delete user[k];
  const parsed = SyncedUserSchema.safeParse(user);
  return parsed.success && parsed.data.upn.includes('@') ? parsed.data : null;
};

export interface SyncResult {
  users: SyncedUser[];
  /** Entries that matched the filter but lack an anchor or a UPN. */
  skipped: number;
  server: string;
  /** Absent when group sync is off (directory.syncGroups). */
  groups?: SyncedGroup[];
  /** Users whose group list was cut at MAX_GROUPS_PER_USER. */
  truncatedMemberships?: number;
}

/**
 * Reads every user under every base DN (paged, `pageSize` per LDAP page). Throws on any failure.
 * `before` runs first on the same connection (delta.ts reads the server's mark there).
 */
export const collectUsers = async (
  dir: Directory,
  pageSize: number,
  before?: (client: Client, server: string) => Promise<void>,
): Promise<SyncResult> => {
  const cfg = dir.cfg;
  return dir.withServiceClient(async (client, server) => {
    await before?.(client, server);
    const users: SyncedUser[] = [];
    // Overlapping base DNs would list a user twice; one base DN cannot (100,000 anchors spared).
    const seen = cfg.baseDns.length > 1 ? new Set<string>() : undefined;
    let skipped = 0;
    let domains: Map<string, string> | undefined;
    // Unreadable partitions leave onPremName as the bare sAMAccountName (set netbiosDomain then).
    if (cfg.kind === 'ad' && !cfg.netbiosDomain)
      domains = await readNetbiosDomains(client).catch(() => undefined);
    for (const base of cfg.baseDns) {
      const pagesIter = client.searchPaginated(base, {
        scope: 'sub',
        filter: cfg.userFilter,
        attributes: syncAttributes(cfg),
        explicitBufferAttributes: cfg.kind === 'ad' ? ['objectGUID'] : [],
        paged: { pageSize },
      });
      for await (const page of pagesIter) {
        heapCheckpoint();
        for (const e of page.searchEntries) {
          const u = toSyncedUser(e, cfg, domains);
          if (!u) skipped++;
          else if (!seen?.has(u.anchor)) {
            seen?.add(u.anchor);
            users.push(u);
          }
        }
      }
    }
    if (!cfg.syncGroups) return { users, skipped, server };
    const byDn = new Map<string, string>();
    for (const u of users) byDn.set(normGroupDn(u.dn), u.anchor);
    // The tokenGroups reads are most of an AD run's read, and a DC answers one connection's
    // requests in turn (TOKEN_GROUPS_IN_FLIGHT); without a second one they all go over this one.
    const more = cfg.kind === 'ad' ? await dir.extraServiceClient(server) : undefined;
    let g: GroupsResult;
    try {
      g = await collectGroups(client, cfg, byDn, {
        pageSize,
        netbios: (dn) => netbiosFor(dn, cfg, domains),
        ...(more ? { tokenGroupClients: [more] } : {}),
      });
    } finally {
      close(more);
    }
    for (const u of users) u.groups = g.memberships.get(u.anchor) ?? [];
    return {
      users,
      skipped: skipped + g.skipped,
      server,
      groups: g.groups,
      truncatedMemberships: g.truncated,
    };
  });
};

/**
 * Splits users into SyncPage-sized chunks: at most `size` items and at most `maxBytes` of JSON each,
 * so a page always fits in one frame whatever the DNs and names are like (at least one, possibly
 * empty, page).
 */
export const chunk = <T>(items: T[], size: number, maxBytes = Number.POSITIVE_INFINITY): T[][] => {
  const out: T[][] = [];
  let page: T[] = [];
  let bytes = 0;
  for (const [i, item] of items.entries()) {
    // Each item's JSON is garbage at once; a long run of them must not grow the heap unchecked.
    if (i % 1000 === 999) heapCheckpoint();
    const n = Buffer.byteLength(JSON.stringify(item)) + 1;
    if (page.length > 0 && (page.length >= size || bytes + n > maxBytes)) {
      out.push(page);
      page = [];
      bytes = 0;
    }
    page.push(item);
    bytes += n;
  }
  if (page.length || out.length === 0) out.push(page);
  return out;
};

/**
 * Accidental-deletion guard: refuses a run that would remove more than `threshold` of the users
 * the previous successful run sent (an emptied OU, a wrong base DN, a broken ACL look like that).
 */
export const deletionGuard = (
  previous: number | undefined,
  now: number,
  threshold: number,
): { ok: boolean; removedFraction: number } => {
  if (!previous) return { ok: true, removedFraction: 0 };
  const removedFraction = Math.max(0, previous - now) / previous;
  return { ok: removedFraction <= threshold, removedFraction };
};

const syncStateFile = (stateDir: string) => join(stateDir, 'sync-state.json');

/** Users (`count`) and groups the last successful run sent. */
export const readLastSync = (stateDir: string): { count?: number; groups?: number } => {
  try {
    const s = JSON.parse(readFileSync(syncStateFile(stateDir), 'utf8')) as Record<string, unknown>;
    return {
      ...(typeof s.count === 'number' ? { count: s.count } : {}),
      ...(typeof s.groups === 'number' ? { groups: s.groups } : {}),
    };
  } catch {
    return {};
  }
};

export const readLastSyncCount = (stateDir: string): number | undefined => readLastSync(stateDir).count;

export const writeLastSyncCount = (stateDir: string, count: number, groups?: number): void =>
  writeFileAtomic(
    syncStateFile(stateDir),
    JSON.stringify({ count, ...(groups !== undefined ? { groups } : {}), at: new Date().toISOString() }),
  );
