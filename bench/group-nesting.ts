/**
 * What nested group resolution costs on Active Directory (Samba AD DC), the two ways AD offers:
 * LDAP_MATCHING_RULE_IN_CHAIN (one paged search per group for its users at any depth, what the
 * agent does) against tokenGroups (one base read per user, SIDs to map back to groups).
 * Seeds USERS users and GROUPS groups in chains of three (each group nested in the next), each
 * user directly in MEMBERSHIPS groups, on a restored copy of the test domain, then times both.
 *
 *   flock /tmp/gatehouse-samba.lock npx node bench/group-nesting.ts [--users 1000] [--groups 100]
 * The last line is one JSON object.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from 'ldapts';
import { escapeFilterValue, IN_CHAIN } from '../apps/agent/src/directory/groups.ts';
import { BASE_DN, startSambaDc } from '../test/harness/samba.ts';

const { values } = parseArgs({
  options: { users: { type: 'string', default: '1000' }, groups: { type: 'string', default: '100' } },
});
const USERS = Number(values.users);
const GROUPS = Number(values.groups);
const MEMBERSHIPS = 3;
const OU = `OU=Bench,${BASE_DN}`;
const USER_FILTER = '(&(objectCategory=person)(objectClass=user))';

const dc = await startSambaDc();
try {
  const c = new Client({ url: dc.url, timeout: 120_000 });
  await c.bind(dc.adminUpn, dc.adminPassword);
  await c.add(OU, { objectClass: ['top', 'organizationalUnit'], ou: 'Bench' });
  const userDn = (i: number) => `CN=bu${i},${OU}`;
  const groupDn = (i: number) => `CN=bg${i},${OU}`;
  let t = performance.now();
  for (let i = 0; i < USERS; i++)
    await c.add(userDn(i), {
      objectClass: ['top', 'person', 'organizationalPerson', 'user'],
      sAMAccountName: `bu${i}`,
      userPrincipalName: `bu${i}@bench.example`,
    });
  for (let i = 0; i < GROUPS; i++) {
    const members = new Set<string>();
    for (let u = 0; u < USERS; u++) if ((u * MEMBERSHIPS + i) % GROUPS < MEMBERSHIPS) members.add(userDn(u));
    // Chains of three: bg(3k) in bg(3k+1) in bg(3k+2).
    if (i % 3 !== 0) members.add(groupDn(i - 1));
    await c.add(groupDn(i), {
      objectClass: ['top', 'group'],
      sAMAccountName: `bg${i}`,
      ...(members.size ? { member: [...members] } : {}),
    });
  }
  const seedS = (performance.now() - t) / 1000;

  const rss = () => process.memoryUsage().rss;
  // IN_CHAIN: one paged search per group.
  t = performance.now();
  const groups = (
    await c.search(OU, {
      scope: 'one',
      filter: '(objectClass=group)',
      attributes: ['objectSid'],
      explicitBufferAttributes: ['objectSid'],
      paged: { pageSize: 500 },
    })
  ).searchEntries;
  let inChainPairs = 0;
  for (const g of groups) {
    const r = await c.search(OU, {
      scope: 'sub',
      filter: `(&${USER_FILTER}(memberOf:${IN_CHAIN}:=${escapeFilterValue(g.dn)}))`,
      attributes: ['1.1'],
      paged: { pageSize: 500 },
    });
    inChainPairs += r.searchEntries.length;
  }
  const inChainMs = performance.now() - t;

  // tokenGroups: one base read per user (tokenGroups is only returned on base-scope searches).
  t = performance.now();
  const sids = new Set(groups.map((g) => (g.objectSid as Buffer).toString('hex')));
  const users = (
    await c.search(OU, { scope: 'one', filter: USER_FILTER, attributes: ['1.1'], paged: { pageSize: 500 } })
  ).searchEntries;
  let tokenPairs = 0;
  for (const u of users) {
    const r = await c.search(u.dn, {
      scope: 'base',
      attributes: ['tokenGroups'],
      explicitBufferAttributes: ['tokenGroups'],
    });
    const tg = r.searchEntries[0]?.tokenGroups;
    for (const s of Array.isArray(tg) ? tg : tg ? [tg] : [])
      if (sids.has((s as Buffer).toString('hex'))) tokenPairs++;
  }
  const tokenGroupsMs = performance.now() - t;
  await c.unbind();
  console.log(
    JSON.stringify({
      directory: 'samba',
      users: USERS,
      groups: GROUPS,
      seedS: Math.round(seedS),
      inChain: {
        ms: Math.round(inChainMs),
        queries: groups.length,
        pairs: inChainPairs,
        msPerGroup: +(inChainMs / groups.length).toFixed(1),
      },
      tokenGroups: {
        ms: Math.round(tokenGroupsMs),
        queries: users.length,
        pairs: tokenPairs,
        msPerUser: +(tokenGroupsMs / users.length).toFixed(1),
      },
      rssMb: Math.round(rss() / 1e6),
    }),
  );
} finally {
  await dc.stop();
}
