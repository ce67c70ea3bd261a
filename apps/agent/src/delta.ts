/**
 * Incremental (delta) sync: what changed since a high-water mark the agent keeps per directory
 * server, so a run reads and sends only changed users and the users deleted since.
 *
 * AD: the mark is the DC's highestCommittedUSN (RootDSE), read before the run; changed objects
 * have uSNChanged above it. USNs are the DC's own counter, so the mark is kept with the DC's
 * identity (dsServiceName and the NTDS Settings invocationId, which changes on a restore): another
 * DC, or a restored one, means a full run. Deleted users are tombstones in CN=Deleted Objects,
 * read with the Show Deleted control; when that read fails the run becomes full, and the full run
 * reconciles by anchor.
 *
 * OpenLDAP: the mark is the largest entryCSN in scope (finer than modifyTimestamp's seconds and
 * ordered by CSNOrderingMatch). A deleted entry leaves nothing to read, so deletions are only seen
 * by the full runs, which delete by absence.
 *
 * A changed group (its member list is on the group, not on the users) is sent with the complete
 * current membership of it and of every group above it (directory/group-delta.ts); the cloud
 * replaces those groups' memberships. A deleted group (an AD tombstone) still makes the run full.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SyncedGroup, SyncedUser } from '@gatehouse/protocol';
import { type Client, Control, type Entry } from 'ldapts';
import { z } from 'zod';
import type { DirectoryConfig } from './config.ts';
import { groupMembersNow, scanAfterFor } from './directory/group-delta.ts';
import { collectGroups, guidToString, normDn, readGroupEntries } from './directory/groups.ts';
import type { Directory } from './directory/index.ts';
import { writeFileAtomic } from './state.ts';
import { netbiosFor, readNetbiosDomains, syncAttributes, toSyncedUser } from './sync.ts';

/** LDAP_SERVER_SHOW_DELETED_OID: searches return tombstones too. */
export const SHOW_DELETED = '1.2.840.113556.1.4.417';

/** Older than this, a mark is not trusted (AD's tombstone lifetime is 60 to 180 days). */
export const MAX_MARK_AGE_MS = 7 * 24 * 3_600_000;

const CSN = /^\d{14}(\.\d{1,6})?Z#[0-9a-f]{6}#[0-9a-f]{3}#[0-9a-f]{6}$/i;

export const SyncMark = z.object({
  kind: z.enum(['ad', 'openldap']),
  /** AD: dsServiceName#invocationId; OpenLDAP: the server URL. */
  identity: z.string().min(1).max(2048),
  /** AD: a USN (decimal); OpenLDAP: an entryCSN. */
  mark: z
    .string()
    .regex(/^\d{1,20}$/)
    .or(z.string().regex(CSN)),
  /** When the last full run ended (ms since epoch). */
  fullAt: z.number(),
  /** When the mark was last advanced. */
  at: z.number(),
});
export type SyncMark = z.infer<typeof SyncMark>;

const markFile = (stateDir: string) => join(stateDir, 'sync-mark.json');

export const readMark = (stateDir: string): SyncMark | undefined => {
  try {
    const r = SyncMark.safeParse(JSON.parse(readFileSync(markFile(stateDir), 'utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
};

export const writeMark = (stateDir: string, m: SyncMark): void =>
  writeFileAtomic(markFile(stateDir), JSON.stringify(m));

const first = (v: unknown): string | undefined => {
  const x = Array.isArray(v) ? v[0] : v;
  if (x === undefined || x === null) return undefined;
  return Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
};
const all = (v: unknown): string[] => (Array.isArray(v) ? v : v == null ? [] : [v]).map(String);

/** CSNs compare as strings: fixed-width time, then change count, server id and op number. */
const maxCsn = (a: string | undefined, b: string | undefined) => (!a ? b : !b ? a : a > b ? a : b);

/**
 * The server's identity and its current mark, read before a run from the client it uses. On
 * OpenLDAP the mark costs a scan of the entries' CSNs, so a delta run (`withMark` false), which
 * takes its next mark from the entries it reads, skips it.
 */
export const readPosition = async (
  client: Client,
  cfg: DirectoryConfig,
  server: string,
  withMark = true,
): Promise<{ identity: string; mark: string | undefined }> => {
  if (cfg.kind === 'openldap') {
    let mark: string | undefined;
    if (!withMark) return { identity: server, mark };
    const bases = new Set([...cfg.baseDns, ...(cfg.syncGroups ? (cfg.groupBaseDns ?? []) : [])]);
    const filter = cfg.syncGroups ? `(|${cfg.userFilter}${cfg.groupFilter})` : cfg.userFilter!;
    for (const base of bases) {
      for await (const page of client.searchPaginated(base, {
        scope: 'sub',
        filter,
        attributes: ['entryCSN'],
        paged: { pageSize: 1000 },
      })) {
        for (const e of page.searchEntries) mark = maxCsn(mark, first(e.entryCSN));
      }
    }
    return { identity: server, mark: mark && CSN.test(mark) ? mark : undefined };
  }
  const dse = (
    await client.search('', { scope: 'base', attributes: ['dsServiceName', 'highestCommittedUSN'] })
  ).searchEntries[0];
  const service = first(dse?.dsServiceName) ?? '';
  const usn = first(dse?.highestCommittedUSN);
  const ntds = await client
    .search(service, {
      scope: 'base',
      attributes: ['invocationId'],
      explicitBufferAttributes: ['invocationId'],
    })
    .catch(() => undefined);
  const inv = ntds?.searchEntries[0]?.invocationId;
  const b = Array.isArray(inv) ? inv[0] : inv;
  const invocation = Buffer.isBuffer(b) && b.length === 16 ? guidToString(b) : '';
  return {
    identity: `${normDn(service)}#${invocation}`,
    mark: usn && /^\d{1,20}$/.test(usn) ? usn : undefined,
  };
};

export type DeltaResult =
  | {
      full?: undefined;
      users: SyncedUser[];
      /** Anchors of users deleted since the mark (AD). */
      deleted: string[];
      /** Groups changed since the mark. */
      groups: SyncedGroup[];
      /** Group anchor -> its users at any depth now, for the changed groups and those above them. */
      groupMembers: Map<string, string[]>;
      skipped: number;
      server: string;
      /** The mark to keep once the cloud applied the run. */
      next: SyncMark;
    }
  | { full: string };

/** The users changed since `m`, or why this run must be full instead. Throws on a failed read. */
export const collectDelta = async (
  dir: Directory,
  pageSize: number,
  m: SyncMark | undefined,
  now: number,
  /** Users the last full run sent (how member anchors are looked up: group-delta.ts). */
  knownUsers?: number,
): Promise<DeltaResult> => {
  const cfg = dir.cfg;
  if (!m) return { full: 'no high-water mark' };
  if (m.kind !== cfg.kind) return { full: 'the directory kind changed' };
  if (now - m.at > MAX_MARK_AGE_MS) return { full: 'the high-water mark is stale' };
  return dir.withServiceClient(async (client, server) => {
    const pos = await readPosition(client, cfg, server, false);
    if (pos.identity !== m.identity) return { full: 'another directory server answered' };
    const since = changedFilter(cfg, m.mark);
    const changed = cfg.syncGroups ? await changedGroups(client, cfg, since, m.mark) : new Map();
    const deleted = cfg.kind === 'ad' ? await deletedSince(client, cfg, m.mark) : { users: [] };
    if (deleted === null) return { full: 'deleted objects are not readable' };
    if ('group' in deleted) return { full: 'a group was deleted' };
    const domains =
      cfg.kind === 'ad' && !cfg.netbiosDomain
        ? await readNetbiosDomains(client).catch(() => undefined)
        : undefined;
    const users: SyncedUser[] = [];
    const seen = new Set<string>();
    let skipped = 0;
    let csn = cfg.kind === 'openldap' ? m.mark : undefined;
    for (const c of changed.values()) csn = maxCsn(csn, c);
    for (const e of await searchAll(client, cfg.baseDns, `(&${cfg.userFilter}${since})`, [
      ...syncAttributes(cfg),
      ...(cfg.kind === 'openldap' ? ['entryCSN'] : []),
    ])) {
      const c = first(e.entryCSN);
      if (cfg.kind === 'openldap' && c === m.mark) continue; // sent by the run that set the mark
      csn = maxCsn(csn, c);
      const u = toSyncedUser(e, cfg, domains);
      if (!u) skipped++;
      else if (!seen.has(u.anchor)) {
        seen.add(u.anchor);
        users.push(u);
      }
    }
    let groups: SyncedGroup[] = [];
    let groupMembers = new Map<string, string[]>();
    if (cfg.syncGroups && (users.length > 0 || changed.size > 0)) {
      // One read of every group's member list serves both the changed users and the changed groups.
      const opts = { pageSize, netbios: (dn: string) => netbiosFor(dn, cfg, domains) };
      const read = await readGroupEntries(client, cfg, opts);
      if (users.length > 0) {
        const byDn = new Map(users.map((u) => [normDn(u.dn), u.anchor]));
        const g = await collectGroups(client, cfg, byDn, opts, read);
        for (const u of users) u.groups = g.memberships.get(u.anchor) ?? [];
      }
      if (changed.size > 0) {
        const anchors = new Set(changed.keys());
        groups = read.entries.filter((e) => anchors.has(e.group.anchor)).map((e) => e.group);
        groupMembers = await groupMembersNow(client, cfg, read.entries, anchors, scanAfterFor(knownUsers));
      }
    }
    const mark = cfg.kind === 'ad' ? (pos.mark ?? m.mark) : (csn ?? m.mark);
    return {
      users,
      deleted: deleted.users,
      groups,
      groupMembers,
      skipped,
      server,
      next: { ...m, mark, at: now },
    };
  });
};

/** The filter part selecting entries changed after `mark` (OpenLDAP: at or after; equal is dropped). */
const changedFilter = (cfg: DirectoryConfig, mark: string) =>
  cfg.kind === 'ad' ? `(uSNChanged>=${BigInt(mark) + 1n})` : `(entryCSN>=${mark})`;

const searchAll = async (client: Client, bases: readonly string[], filter: string, attributes: string[]) => {
  const out: Entry[] = [];
  for (const base of bases) {
    for await (const page of client.searchPaginated(base, {
      scope: 'sub',
      filter,
      attributes,
      explicitBufferAttributes: ['objectGUID'],
      paged: { pageSize: 500 },
    }))
      out.push(...page.searchEntries);
  }
  return out;
};

/** Anchors of the groups changed since the mark, with their entryCSN on OpenLDAP (for the next mark). */
const changedGroups = async (
  client: Client,
  cfg: DirectoryConfig,
  since: string,
  mark: string,
): Promise<Map<string, string | undefined>> => {
  const out = new Map<string, string | undefined>();
  const attrs = [cfg.kind === 'ad' ? 'objectGUID' : 'entryUUID', 'entryCSN'];
  for (const e of await searchAll(
    client,
    cfg.groupBaseDns ?? cfg.baseDns,
    `(&${cfg.groupFilter}${since})`,
    attrs,
  )) {
    const csn = cfg.kind === 'openldap' ? first(e.entryCSN) : undefined;
    if (cfg.kind === 'openldap' && csn === mark) continue; // applied by the run that set the mark
    const g = Array.isArray(e.objectGUID) ? e.objectGUID[0] : e.objectGUID;
    const anchor =
      cfg.kind === 'ad'
        ? Buffer.isBuffer(g) && g.length === 16
          ? guidToString(g)
          : undefined
        : first(e.entryUUID);
    if (anchor) out.set(anchor, csn);
  }
  return out;
};

/** The naming context (DC=... suffix) holding a DN. */
const namingContext = (dn: string) => {
  const i = dn.toLowerCase().search(/(^|,)\s*dc=/);
  return i < 0 ? dn : dn.slice(i === 0 ? 0 : i + 1).trim();
};

const inScope = (dn: string, bases: string[]) => {
  const d = normDn(dn);
  return bases.some((b) => d === b || d.endsWith(`,${b}`));
};

/**
 * AD tombstones with uSNChanged above the mark: user anchors, or `group` when a group went.
 * Null when the Deleted Objects container cannot be read (no Show Deleted support, no right).
 */
const deletedSince = async (
  client: Client,
  cfg: DirectoryConfig,
  mark: string,
): Promise<{ users: string[]; group?: true } | null> => {
  const users: string[] = [];
  const ncs = new Set(cfg.baseDns.map(namingContext));
  const bases = cfg.baseDns.map(normDn);
  try {
    for (const nc of ncs) {
      for await (const page of client.searchPaginated(
        `CN=Deleted Objects,${nc}`,
        {
          scope: 'one',
          filter: `(&(isDeleted=TRUE)(uSNChanged>=${BigInt(mark) + 1n}))`,
          attributes: ['objectGUID', 'objectClass', 'lastKnownParent'],
          explicitBufferAttributes: ['objectGUID'],
          paged: { pageSize: 500 },
        },
        new Control(SHOW_DELETED),
      )) {
        for (const e of page.searchEntries) {
          const classes = all(e.objectClass).map((c) => c.toLowerCase());
          if (classes.includes('group')) return { users, group: true };
          // Computers are users too; objects deleted outside the base DNs were never synced.
          if (!classes.includes('user') || classes.includes('computer')) continue;
          const parent = first(e.lastKnownParent);
          if (parent && !inScope(parent, bases)) continue;
          const g = Array.isArray(e.objectGUID) ? e.objectGUID[0] : e.objectGUID;
          if (Buffer.isBuffer(g) && g.length === 16) users.push(guidToString(g));
        }
      }
    }
  } catch {
    return null;
  }
  return { users };
};
