/**
 * Groups in tokens on Active Directory (Samba AD DC): a nested security group (Finance ⊃ Ledger ⊃
 * alice), resolved by the DC (tokenGroups), and a distribution group (member lists), through
 * the real agent and cloud. The verified ID token carries Finance; a security-only application
 * does not get the distribution group; NETBIOS\name format; the SID and the run's DC are recorded.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createClient, type GroupsClaimSetting } from '../apps/cloud/src/store/clients.ts';
import { listGroups } from '../apps/cloud/src/store/groups.ts';
import { listSyncRuns } from '../apps/cloud/src/store/sync-runs.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import {
  adUsers,
  BASE_DN,
  NETBIOS,
  REALM,
  type SambaDc,
  startSambaDc,
  USER_PASSWORD,
} from './harness/samba.ts';
import { adDirectory, type Stack, startStack } from './harness/stack.ts';

let dc: SambaDc;
let stack: Stack;
let f: typeof fetch;
let ids: Record<string, string>;

before(async () => {
  dc = await startSambaDc();
  // The snapshot has no groups of ours: they are added to this run's copy of the domain.
  await dc.tool('group', 'add', 'Finance');
  await dc.tool('group', 'add', 'Ledger');
  await dc.tool('group', 'add', 'Newsletter', '--group-type=Distribution');
  await dc.tool('group', 'addmembers', 'Finance', 'Ledger');
  await dc.tool('group', 'addmembers', 'Ledger', adUsers.ok);
  await dc.tool('group', 'addmembers', 'Newsletter', adUsers.ok);
  await dc.tool('group', 'addmembers', 'Newsletter', adUsers.spare);
  stack = await startStack({
    domain: REALM,
    directory: adDirectory({ ...dc, baseDn: BASE_DN, netbios: NETBIOS }),
    expectUsers: [dc.upn(adUsers.ok), dc.upn(adUsers.spare)],
  });
  f = pinnedFetch(stack.cloud.caCert);
  await stack.firstSync();
  const { groups } = await listGroups(stack.cloud.ctx.db, stack.tenantId, { limit: 1000 });
  ids = Object.fromEntries(groups.map((g) => [g.name, g.id]));
});

after(async () => {
  await stack?.stop();
  await dc?.stop();
});

const signIn = async (groups: Partial<GroupsClaimSetting>, user: string) => {
  const { clientId } = await createClient(stack.cloud.ctx.db, stack.tenantId, {
    name: `App ${JSON.stringify(groups)}`,
    redirectUris: ['https://app.example.test/callback'],
    public: true,
    grantTypes: ['authorization_code', 'password'],
    groups: groups as GroupsClaimSetting,
  });
  const res = await f(`${stack.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: clientId,
      username: dc.upn(user),
      password: USER_PASSWORD,
      scope: 'openid',
    }).toString(),
  });
  const body = (await res.json()) as { id_token: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  const jwks = (await (await f(`${stack.issuer}/jwks`)).json()) as Parameters<typeof createLocalJWKSet>[0];
  const { payload } = await jwtVerify(body.id_token, createLocalJWKSet(jwks), {
    issuer: stack.issuer,
    audience: clientId,
  });
  return payload.groups as string[] | undefined;
};

test('AD groups arrive with objectGUID anchors, SIDs, NETBIOS names and the security bit', async () => {
  const { groups } = await listGroups(stack.cloud.ctx.db, stack.tenantId, { limit: 1000 });
  const finance = groups.find((g) => g.name === 'Finance')!;
  assert.match(finance.sourceAnchor, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.match(finance.onPremSid!, /^S-1-5-21-\d+-\d+-\d+-\d+$/);
  assert.equal(finance.onPremName, `${NETBIOS}\\Finance`);
  assert.equal(finance.security, true);
  assert.equal(groups.find((g) => g.name === 'Newsletter')!.security, false, 'a distribution group');
  assert.equal(finance.members, 1, 'alice, through Ledger');
  const [run] = await listSyncRuns(stack.cloud.ctx.db, stack.tenantId);
  assert.equal(run!.server, dc.url, 'the run names the DC it read');
  assert.ok(run!.counts.groupsSeen >= 3);
});

test("nested membership is in alice's verified ID token; the relying party lets Finance in", async () => {
  const all = await signIn({ include: 'all' }, adUsers.ok);
  assert.ok(all!.includes(ids.Finance!), 'Finance, through Ledger');
  assert.ok(all!.includes(ids.Ledger!));
  assert.ok(all!.includes(ids.Newsletter!));
  const judy = await signIn({ include: 'all' }, adUsers.spare);
  assert.ok(judy!.includes(ids.Newsletter!));
  assert.ok(!judy!.includes(ids.Finance!), 'judy is not in Finance: the relying party keeps her out');
  // tokenGroups includes the primary group, as a logon token does.
  assert.ok(all!.includes(ids['Domain Users']!) && judy!.includes(ids['Domain Users']!));
  const security = await signIn({ include: 'security', format: 'netbios' }, adUsers.ok);
  assert.deepEqual(security!.sort(), [
    `${NETBIOS}\\Domain Users`,
    `${NETBIOS}\\Finance`,
    `${NETBIOS}\\Ledger`,
  ]);
  assert.ok(!security!.includes(`${NETBIOS}\\Newsletter`), 'the distribution group is left out');
});
