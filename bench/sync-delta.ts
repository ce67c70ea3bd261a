/**
 * What a delta sync costs against a full one on Active Directory (Samba AD DC): seeds USERS users
 * and GROUPS groups (each user in three) in an OU of a restored copy of the test domain, then times
 * the agent's full read (users, groups, tokenGroups per user) and its delta read after CHANGED
 * users' displayName changed, and after nothing changed.
 *
 *   flock /tmp/gatehouse-samba.lock npx node bench/sync-delta.ts [--users 2000] [--groups 100] [--changed 10]
 * The last line is one JSON object.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Attribute, Change, Client } from 'ldapts';
import { loadAgentConfig } from '../apps/agent/src/config.ts';
import { collectDelta, readPosition, type SyncMark } from '../apps/agent/src/delta.ts';
import { Directory } from '../apps/agent/src/directory/index.ts';
import { collectUsers } from '../apps/agent/src/sync.ts';
import { BASE_DN, startSambaDc } from '../test/harness/samba.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    groups: { type: 'string', default: '100' },
    changed: { type: 'string', default: '10' },
  },
});
const USERS = Number(values.users);
const GROUPS = Number(values.groups);
const CHANGED = Number(values.changed);
const OU = `OU=Bench,${BASE_DN}`;

const dc = await startSambaDc();
const tmp = mkdtempSync(join(tmpdir(), 'gh-bench-delta-'));
try {
  const c = new Client({ url: dc.url, timeout: 120_000 });
  await c.bind(dc.adminUpn, dc.adminPassword);
  await c.add(OU, { objectClass: ['top', 'organizationalUnit'], ou: 'Bench' });
  const userDn = (i: number) => `CN=bu${i},${OU}`;
  for (let i = 0; i < USERS; i++)
    await c.add(userDn(i), {
      objectClass: ['top', 'person', 'organizationalPerson', 'user'],
      sAMAccountName: `bu${i}`,
      userPrincipalName: `bu${i}@bench.example`,
    });
  for (let g = 0; g < GROUPS; g++) {
    const member: string[] = [];
    for (let u = 0; u < USERS; u++) if ((u * 3 + g) % GROUPS < 3) member.push(userDn(u));
    await c.add(`CN=bg${g},${OU}`, {
      objectClass: ['top', 'group'],
      sAMAccountName: `bg${g}`,
      ...(member.length ? { member } : {}),
    });
  }

  writeFileSync(join(tmp, 'svc.pw'), `${dc.adminPassword}\n`, { mode: 0o600 });
  const cfg = loadAgentConfig({
    env: {},
    overrides: {
      stateDir: tmp,
      directory: {
        kind: 'ad',
        urls: [dc.url],
        bindDn: dc.adminUpn,
        bindPasswordFile: join(tmp, 'svc.pw'),
        baseDns: [OU],
        timeoutMs: 60_000,
      },
    },
  });
  const dir = new Directory(cfg.directory, { backgroundProbe: false });
  let t = performance.now();
  let pos: { identity: string; mark: string | undefined } | undefined;
  const full = await collectUsers(dir, 500, async (client, server) => {
    pos = await readPosition(client, cfg.directory, server);
  });
  const fullMs = performance.now() - t;
  const now = Date.now();
  const mark: SyncMark = { kind: 'ad', identity: pos!.identity, mark: pos!.mark!, fullAt: now, at: now };

  for (let i = 0; i < CHANGED; i++)
    await c.modify(
      userDn(i * Math.floor(USERS / CHANGED)),
      new Change({
        operation: 'replace',
        modification: new Attribute({ type: 'displayName', values: [`Changed ${i}`] }),
      }),
    );
  t = performance.now();
  const delta = await collectDelta(dir, 500, mark, Date.now());
  const deltaMs = performance.now() - t;
  if (delta.full !== undefined) throw new Error(`the delta became full: ${delta.full}`);
  t = performance.now();
  const idle = await collectDelta(dir, 500, delta.next, Date.now());
  const idleMs = performance.now() - t;
  if (idle.full !== undefined) throw new Error(`the idle delta became full: ${idle.full}`);

  // Membership by delta: a member added to one small group, then one removed from a group that
  // holds every user and is itself nested in another (each run resends the changed groups' and
  // their parents' whole member lists).
  const member = (group: string, op: 'add' | 'delete', dn: string) =>
    c.modify(
      `CN=${group},${OU}`,
      new Change({ operation: op, modification: new Attribute({ type: 'member', values: [dn] }) }),
    );
  await member('bg0', 'add', userDn(USERS - 1));
  t = performance.now();
  const small = await collectDelta(dir, 500, idle.next, Date.now());
  const smallMs = performance.now() - t;
  if (small.full !== undefined) throw new Error(`the group delta became full: ${small.full}`);
  const everyone = Array.from({ length: USERS }, (_, i) => userDn(i));
  await c.add(`CN=ball,${OU}`, { objectClass: ['top', 'group'], sAMAccountName: 'ball', member: everyone });
  await c.add(`CN=btop,${OU}`, {
    objectClass: ['top', 'group'],
    sAMAccountName: 'btop',
    member: [`CN=ball,${OU}`],
  });
  const added = await collectDelta(dir, 500, small.next, Date.now());
  if (added.full !== undefined) throw new Error(`the group delta became full: ${added.full}`);
  await member('ball', 'delete', userDn(0));
  t = performance.now();
  const big = await collectDelta(dir, 500, added.next, Date.now());
  const bigMs = performance.now() - t;
  if (big.full !== undefined) throw new Error(`the group delta became full: ${big.full}`);
  const lists = (d: typeof big) => [...d.groupMembers.values()].map((l) => l.length);
  await dir.close();
  await c.unbind();
  console.log(
    JSON.stringify({
      users: USERS,
      groups: GROUPS,
      full: { ms: Math.round(fullMs), users: full.users.length, groups: full.groups?.length },
      delta: { ms: Math.round(deltaMs), users: delta.users.length },
      idleDelta: { ms: Math.round(idleMs), users: idle.users.length },
      memberAddedToSmallGroup: { ms: Math.round(smallMs), memberLists: lists(small) },
      memberRemovedFromGroupOfEveryone: { ms: Math.round(bigMs), memberLists: lists(big) },
    }),
  );
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
  await dc.stop();
}
