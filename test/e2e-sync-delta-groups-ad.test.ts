/**
 * Group membership changes by delta on Active Directory (Samba AD DC, the real agent, the cloud):
 * a user added to a nested group (Finance ⊃ Ledger) and a user removed from it reach the cloud by
 * a delta run (the record says delta) and a fresh token's groups claim follows; a new group holding
 * Domain Users comes with everyone whose primary group that is (primaryGroupID, not in `member`).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createClient } from '../apps/cloud/src/store/clients.ts';
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
let clientId: string;

before(async () => {
  dc = await startSambaDc();
  await dc.tool('group', 'add', 'Finance');
  await dc.tool('group', 'add', 'Ledger');
  await dc.tool('group', 'addmembers', 'Finance', 'Ledger');
  await dc.tool('group', 'addmembers', 'Ledger', adUsers.ok);
  stack = await startStack({
    domain: REALM,
    directory: adDirectory({ ...dc, baseDn: BASE_DN, netbios: NETBIOS }),
    expectUsers: [dc.upn(adUsers.ok), dc.upn(adUsers.spare)],
    agent: { sync: { deltaIntervalMinutes: 0 } },
  });
  f = pinnedFetch(stack.cloud.caCert);
  await stack.firstSync();
  clientId = (
    await createClient(stack.cloud.ctx.db, stack.tenantId, {
      name: 'Groups',
      redirectUris: ['https://app.example.test/callback'],
      public: true,
      grantTypes: ['password'],
      groups: { include: 'all', format: 'name' } as never,
    })
  ).clientId;
});

after(async () => {
  await stack?.stop();
  await dc?.stop();
});

const syncRun = (mode: 'full' | 'delta') => stack.syncRun(mode);

/** The group names in a fresh, verified ID token of `user`. */
const groupsOf = async (user: string): Promise<string[]> => {
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
  return ((payload.groups as string[] | undefined) ?? []).sort();
};

test('a user added to a nested group and one removed reach the token by a delta run', async () => {
  assert.deepEqual(await groupsOf(adUsers.ok), ['Domain Users', 'Finance', 'Ledger']);
  assert.deepEqual(await groupsOf(adUsers.spare), ['Domain Users']);
  await dc.tool('group', 'addmembers', 'Ledger', adUsers.spare);
  await dc.tool('group', 'removemembers', 'Ledger', adUsers.ok);
  const run = await syncRun('delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.mode, 'delta');
  // Samba also moves the members' uSNChanged (their memberOf back link), so they come as changed
  // users too; Windows does not, and the groups' lists alone carry the change.
  assert.ok(run.counts.groupsSeen >= 1, 'Ledger');
  assert.equal(run.counts.membershipsChanged, 2, 'judy joined, alice left');
  assert.deepEqual(await groupsOf(adUsers.spare), ['Domain Users', 'Finance', 'Ledger'], 'Finance too');
  assert.deepEqual(await groupsOf(adUsers.ok), ['Domain Users']);
});

test('a new group holding Domain Users comes, by delta, with everyone whose primary group it is', async () => {
  await dc.tool('group', 'add', 'Everyone Staff');
  await dc.tool('group', 'addmembers', 'Everyone Staff', 'Domain Users');
  const run = await syncRun('delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.mode, 'delta');
  assert.equal(run.counts.groupsAdded, 1);
  assert.deepEqual(await groupsOf(adUsers.ok), ['Domain Users', 'Everyone Staff']);
  // A full run, which reads tokenGroups, finds nothing left to change.
  const full = await syncRun('full');
  assert.equal(full.status, 'succeeded', full.error ?? '');
  assert.equal(full.counts.membershipsChanged, 0, 'the deltas left what a full run computes');
});
