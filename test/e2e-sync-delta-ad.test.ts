/**
 * Delta sync on Active Directory (Samba AD DC), end to end: after a full run the agent keeps the
 * DC's highestCommittedUSN with the DC's identity (dsServiceName, invocationId); a delta run sends
 * only the changed and the new user; a user deleted on the DC is deleted by the next delta (its
 * tombstone, read with the Show Deleted control); a disabled user's refresh token stops working
 * with the run that sees it; a mark kept from another DC makes the requested delta a full run.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createClient } from '../apps/cloud/src/store/clients.ts';
import { waitFor } from './harness/children.ts';
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
      name: 'Refreshing',
      redirectUris: ['https://app.example.test/callback'],
      public: true,
      grantTypes: ['password', 'refresh_token'],
    })
  ).clientId;
});

after(async () => {
  await stack?.stop();
  await dc?.stop();
});

const syncRun = (mode: 'full' | 'delta') => stack.syncRun(mode);

const user = (name: string) =>
  stack.cloud.ctx.db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', stack.tenantId)
    .where('upn', '=', dc.upn(name).toLowerCase())
    .executeTakeFirst();

const token = async (body: Record<string, string>) => {
  const res = await f(`${stack.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: clientId, ...body }).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
};

test('a delta run sends only the changed and the new user', async () => {
  await dc.ldapModify(
    `dn: ${dc.dn(adUsers.spare)}\nchangetype: modify\nreplace: displayName\ndisplayName: Judy Changed\n\n`,
  );
  await dc.tool('user', 'add', 'zoe', USER_PASSWORD);
  const run = await syncRun('delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.mode, 'delta');
  assert.equal(run.counts.usersSeen, 2, 'judy and zoe only');
  assert.equal(run.counts.usersAdded, 1);
  assert.equal(run.counts.usersUpdated, 1);
  assert.equal((await user(adUsers.spare))?.display_name, 'Judy Changed');
  assert.ok(await user('zoe'));
});

test("a disabled user's refresh token stops working after the delta run", async () => {
  const r = await token({
    grant_type: 'password',
    username: dc.upn(adUsers.ok),
    password: USER_PASSWORD,
    scope: 'openid offline_access',
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const alice = (await user(adUsers.ok))!;
  await dc.tool('user', 'disable', adUsers.ok);
  const run = await syncRun('delta');
  assert.equal(run.mode, 'delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal((await user(adUsers.ok))?.enabled, 0);
  const left = await stack.cloud.ctx.db
    .selectFrom('oidc_payloads')
    .select('model')
    .where('account_id', '=', alice.id)
    .execute();
  assert.deepEqual(left, [], 'sessions, grants and tokens revoked');
  const refreshed = await token({ grant_type: 'refresh_token', refresh_token: r.body.refresh_token! });
  assert.equal(refreshed.status, 400);
  assert.equal(refreshed.body.error, 'invalid_grant');
});

test('a user deleted on the DC is deleted by the next delta run', async () => {
  assert.ok(await user('zoe'));
  await dc.tool('user', 'delete', 'zoe');
  const run = await syncRun('delta');
  assert.equal(run.mode, 'delta', 'the tombstone was read');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.counts.usersDeleted, 1);
  assert.equal(run.counts.usersSeen, 0);
  assert.equal(await user('zoe'), undefined);
});

test('a mark kept from another DC makes the delta a full run', async () => {
  const file = join(stack.stateDirs[0]!, 'sync-mark.json');
  const mark = JSON.parse(readFileSync(file, 'utf8')) as { identity: string; mark: string };
  assert.match(mark.identity, /^cn=ntds settings,.*#[0-9a-f-]{36}$/);
  assert.match(mark.mark, /^\d+$/);
  writeFileSync(
    file,
    JSON.stringify({ ...mark, identity: `cn=ntds settings,cn=dc2${mark.identity.slice(22)}` }),
  );
  await dc.ldapModify(
    `dn: ${dc.dn(adUsers.spare)}\nchangetype: modify\nreplace: displayName\ndisplayName: Judy Again\n\n`,
  );
  const run = await syncRun('delta');
  assert.equal(run.mode, 'full');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.ok(run.counts.usersSeen > 2, 'every user');
  // The agent keeps the mark once it has the final ack, a moment after the record ended.
  await waitFor(
    'the mark of the DC the full run read',
    async () => (JSON.parse(readFileSync(file, 'utf8')) as { identity: string }).identity === mark.identity,
  );
});
