/**
 * The directory bench/sync.ts syncs: USERS users and GROUPS groups, each user directly in three
 * groups and every group past the first 50 inside one of those 50 (nested membership), plus what
 * the cloud must hold afterwards and a way to change some users for the delta run.
 *
 * OpenLDAP is loaded offline with slapadd (test/harness/slapd.ts `bulkLdif`): 100,000 adds over
 * LDAP take longer than the sync measured. Samba AD DC likewise: its sam.ldb is written offline,
 * with the DC stopped, through Samba's own Python bindings (bench/sync-samba-seed.py), since adds
 * over LDAP dropped the connection past a few thousand users.
 */

import { execFile } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../test/harness/children.ts';

/** Appends lines to a file in pieces (an LDIF of 100,000 entries is tens of MB). */
const appendLines = (file: string, lines: string[]) => appendFileSync(file, `${lines.join('\n')}\n`);

export interface SyncDirectory {
  domain: string;
  agentDirectory: Record<string, unknown>;
  /** The directory server's process (its CPU is reported), when known. */
  pid?: number;
  /** What the cloud must hold after the full run (synced users, groups, transitive memberships). */
  expected: { users: number; groups: number; memberships: number };
  /** Changes the displayName of `n` users spread over the directory; their UPNs. */
  change(n: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** Groups 0..PARENTS-1 hold the others (group g sits in g % PARENTS). */
const parentsOf = (groups: number) => Math.min(50, Math.floor(groups / 10));

/**
 * Direct members of each group (user indexes), parent of each group, and the number of
 * transitive memberships that gives.
 */
export const layout = (users: number, groups: number) => {
  const parents = parentsOf(groups);
  const members: number[][] = Array.from({ length: groups }, () => []);
  let memberships = 0;
  for (let u = 0; u < users; u++) {
    const all = new Set<number>();
    for (let k = 0; k < Math.min(3, groups); k++) {
      const g = (((k - 3 * u) % groups) + groups) % groups;
      members[g]!.push(u);
      all.add(g);
      if (g >= parents && parents > 0) all.add(g % parents);
    }
    memberships += all.size;
  }
  const parent = (g: number) => (g >= parents && parents > 0 ? g % parents : undefined);
  return { members, parent, memberships };
};

const spread = (total: number, n: number) => {
  const step = Math.max(1, Math.floor(total / n));
  return Array.from({ length: Math.min(n, total) }, (_, i) => i * step);
};

const startOpenLdap = async (
  users: number,
  groups: number,
  work: string,
  say: (s: string) => void,
): Promise<SyncDirectory> => {
  const { startSlapd } = await import('../test/harness/slapd.ts');
  const suffix = 'dc=bench,dc=test';
  const domain = 'bench.test';
  const people = `ou=people,${suffix}`;
  const groupsDn = `ou=groups,${suffix}`;
  const service = `cn=gatehouse-agent,ou=services,${suffix}`;
  const userDn = (i: number) => `uid=u${i},${people}`;
  const groupDn = (g: number) => `cn=g${g},${groupsDn}`;
  const file = join(work, 'bulk.ldif');
  writeFileSync(file, `dn: ${groupsDn}\nobjectClass: organizationalUnit\nou: groups\n\n`);
  for (let i = 0; i < users; i += 5000) {
    const lines: string[] = [];
    for (let u = i; u < Math.min(users, i + 5000); u++)
      lines.push(
        `dn: ${userDn(u)}`,
        'objectClass: inetOrgPerson',
        `uid: u${u}`,
        `cn: User ${u}`,
        'sn: Bench',
        `displayName: User ${u}`,
        `mail: u${u}@${domain}`,
        '',
      );
    appendLines(file, lines);
  }
  const l = layout(users, groups);
  const children: number[][] = Array.from({ length: groups }, () => []);
  for (let g = 0; g < groups; g++) {
    const p = l.parent(g);
    if (p !== undefined) children[p]!.push(g);
  }
  for (let g = 0; g < groups; g++) {
    const member = [...l.members[g]!.map(userDn), ...children[g]!.map(groupDn)];
    // groupOfNames must have a member: the service account, which is no synced user.
    if (member.length === 0) member.push(service);
    appendLines(file, [
      `dn: ${groupDn(g)}`,
      'objectClass: groupOfNames',
      `cn: g${g}`,
      `description: Bench group ${g}`,
      ...member.map((m) => `member: ${m}`),
      '',
    ]);
  }
  say(`  slapadd of ${users + groups} entries`);
  const s = await startSlapd({ suffix, bulkLdif: file, maxSizeMb: 4096 });
  const bindFile = join(work, 'bind-password');
  writeFileSync(bindFile, s.servicePassword, { mode: 0o600 });
  return {
    domain,
    pid: Number(readFileSync(join(s.dir, 'slapd.pid'), 'utf8').trim()) || undefined,
    agentDirectory: {
      kind: 'openldap',
      urls: [s.url],
      bindDn: s.serviceDn,
      bindPasswordFile: bindFile,
      baseDns: [people],
      groupBaseDns: [groupsDn],
    },
    expected: { users, groups, memberships: l.memberships },
    async change(n) {
      const picked = spread(users, n);
      await s.ldapModify(
        picked
          .map(
            (u) => `dn: ${userDn(u)}\nchangetype: modify\nreplace: displayName\ndisplayName: Changed ${u}\n`,
          )
          .join('\n'),
      );
      return picked.map((u) => `u${u}@${domain}`);
    },
    stop: () => s.stop(),
  };
};

export const startSyncDirectory = async (
  kind: 'openldap' | 'samba',
  users: number,
  groups: number,
  work: string,
  say: (s: string) => void,
): Promise<SyncDirectory> => {
  return kind === 'openldap' ? startOpenLdap(users, groups, work, say) : startSamba(users, groups, work, say);
};

/**
 * A run that restores the test domain without holding the Samba lock swaps the bare snapshot in
 * under the seed (seen once here: the agent's sync then failed with noSuchObject), so the seed's
 * last user must be there before anything is timed.
 */
const seededOrThrow = async (url: string, admin: string, password: string, dn: string) => {
  const args = ['-LLL', '-x', '-H', url, '-D', admin, '-w', password, '-b', dn, '-s', 'base', '1.1'];
  try {
    await promisify(execFile)('ldapsearch', args);
  } catch {
    throw new Error(`${dn} is not in the started DC: was the Samba snapshot restored by another run?`);
  }
};

const startSamba = async (
  users: number,
  groups: number,
  work: string,
  say: (s: string) => void,
): Promise<SyncDirectory> => {
  const { startSambaDc, BASE_DN, REALM } = await import('../test/harness/samba.ts');
  const dc = await startSambaDc();
  const ou = `OU=Bench,${BASE_DN}`;
  try {
    await dc.stop();
    // Where the harness restores instance 1 of the test domain.
    const dir = join(tmpdir(), 'gatehouse-samba', 'dc');
    say(`  sam.ldb: ${users} users, ${groups} groups, offline`);
    await promisify(execFile)(
      '/usr/bin/python3',
      [
        join(ROOT, 'bench', 'sync-samba-seed.py'),
        join(dir, 'etc', 'smb.conf'),
        join(dir, 'private', 'sam.ldb'),
        String(users),
        String(groups),
        REALM,
      ],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    await dc.start();
    if (users > 0) await seededOrThrow(dc.url, dc.adminUpn, dc.adminPassword, `CN=bu${users - 1},${ou}`);
  } catch (err) {
    await dc.stop().catch(() => {});
    throw err;
  }
  const bindFile = join(work, 'bind-password');
  writeFileSync(bindFile, dc.adminPassword, { mode: 0o600 });
  return {
    // No pid: Samba serves LDAP from child processes of its master, so its CPU is not summed here.
    domain: REALM,
    agentDirectory: {
      kind: 'ad',
      urls: [dc.ldapsUrl],
      caFile: dc.caFile,
      tlsServerName: dc.tlsServerName,
      bindDn: dc.adminUpn,
      bindPasswordFile: bindFile,
      baseDns: [ou],
      timeoutMs: 60_000,
    },
    expected: { users, groups, memberships: layout(users, groups).memberships },
    async change(n) {
      const picked = spread(users, n);
      await dc.ldapModify(
        picked
          .map(
            (u) =>
              `dn: CN=bu${u},${ou}\nchangetype: modify\nreplace: displayName\ndisplayName: Changed ${u}\n`,
          )
          .join('\n'),
      );
      return picked.map((u) => `bu${u}@${REALM}`.toLowerCase());
    },
    stop: () => dc.stop(),
  };
};
