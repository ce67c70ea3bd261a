/**
 * Just-in-time users on Active Directory (Samba AD DC, the real agent, the cloud): users created
 * on the DC after the sync. Off (the default): invalid_credentials and nobody created; on: a wrong
 * password is invalid_credentials and creates nobody; the right password by UPN signs in and
 * creates the user with the objectGUID anchor and NETBIOS\sAMAccountName (audited
 * user.jit_created); the NETBIOS\name form finds another user by sAMAccountName.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { updateSettings } from '../apps/cloud/src/store/tenants.ts';
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

before(async () => {
  dc = await startSambaDc();
  stack = await startStack({
    domain: REALM,
    directory: adDirectory({ ...dc, baseDn: BASE_DN, netbios: NETBIOS }),
    expectUsers: [dc.upn(adUsers.ok)],
    agent: { sync: { deltaIntervalMinutes: 0 } },
  });
  await stack.firstSync();
  for (const name of ['jitfay', 'jitgil', 'jithal']) await dc.tool('user', 'add', name, USER_PASSWORD);
});

after(async () => {
  await stack?.stop();
  await dc?.stop();
});

const user = (name: string) =>
  stack.cloud.ctx.db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', stack.tenantId)
    .where('upn', '=', dc.upn(name).toLowerCase())
    .executeTakeFirst();
const created = () =>
  stack.cloud.ctx.db
    .selectFrom('audit')
    .selectAll()
    .where('tenant_id', '=', stack.tenantId)
    .where('action', '=', 'user.jit_created')
    .execute();
const jit = async (on: boolean) => {
  await updateSettings(stack.cloud.ctx.db, stack.tenantId, { jitUsers: on }, { activeAgents: 1 });
  stack.cloud.authenticator.invalidate(stack.tenantId);
};

test('off (the default): a user not synced answers invalid_credentials and is not created', async () => {
  const r = await stack.passwordGrant(dc.upn('jithal'), USER_PASSWORD);
  assert.equal(r.code, 'invalid_credentials');
  assert.equal(await user('jithal'), undefined);
});

test('on: a wrong password answers invalid_credentials and creates nobody', async () => {
  await jit(true);
  const r = await stack.passwordGrant(dc.upn('jitfay'), 'Wrong-Passw0rd!');
  assert.equal(r.code, 'invalid_credentials');
  assert.equal(await user('jitfay'), undefined);
  const [row] = await stack.signIns();
  assert.ok(row!.agent_id, 'an agent looked the name up');
  assert.equal(row!.directory_code, '49/52e', 'the DC refused the bind');
  assert.deepEqual(await created(), []);
});

test('on: the right password signs in by UPN and creates the user, audited', async () => {
  const r = await stack.passwordGrant(dc.upn('jitfay'), USER_PASSWORD);
  assert.equal(r.code, 'success', JSON.stringify(r.body));
  const fay = await user('jitfay');
  assert.ok(fay);
  assert.equal(fay.source, 'synced');
  assert.match(fay.source_anchor ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(fay.on_prem_name, `${NETBIOS}\\jitfay`);
  assert.deepEqual(
    (await created()).map((a) => a.target),
    [fay.id],
  );
});

test('on: NETBIOS\\name finds the user by sAMAccountName', async () => {
  const r = await stack.passwordGrant(`${NETBIOS}\\jitgil`, USER_PASSWORD);
  assert.equal(r.code, 'success', JSON.stringify(r.body));
  assert.ok(await user('jitgil'));
  // Turned off again, a user not synced is unknown again.
  await jit(false);
  assert.equal(
    (await stack.passwordGrant(dc.upn('jithal'), 'Another-Passw0rd!')).code,
    'invalid_credentials',
  );
});
