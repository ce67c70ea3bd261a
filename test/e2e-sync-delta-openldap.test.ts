/**
 * Delta sync on OpenLDAP, end to end (slapd, the real agent, the cloud): after a full run the
 * agent keeps an entryCSN mark; a delta run sends only the changed and the new user (the run
 * record's counts say so); a user deleted in the directory stays until the full run reconciles by
 * anchor; a user locked by ppolicy loses their refresh token with the run that sees it; a mark
 * from another server makes the requested delta a full run.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createClient } from '../apps/cloud/src/store/clients.ts';
import { waitFor } from './harness/children.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'example.test';
const PW = `Dlt-${Math.random().toString(36).slice(2, 8)}-Pw1`;
const USERS = ['ann', 'ben', 'cat', 'dee'];
let slapd: SlapdInstance;
let stack: Stack;
let f: typeof fetch;
let clientId: string;

const p = (u: string) => `uid=${u},${slapd.peopleDn}`;

before(async () => {
  slapd = await startSlapd({ users: USERS.map((uid) => ({ uid, password: PW, mail: `${uid}@${DOMAIN}` })) });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
    },
    expectUsers: USERS.map((u) => `${u}@${DOMAIN}`),
    // Runs only when the test asks, so every record below is the one it asked for.
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
  await slapd?.stop();
});

/** Asks the agent for a run and waits for its record to end. */
const syncRun = (mode: 'full' | 'delta') => stack.syncRun(mode);

const token = async (body: Record<string, string>) => {
  const res = await f(`${stack.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: clientId, ...body }).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
};
const refreshTokenOf = async (user: string) => {
  const r = await token({
    grant_type: 'password',
    username: `${user}@${DOMAIN}`,
    password: PW,
    scope: 'openid offline_access',
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(r.body.refresh_token);
  return r.body.refresh_token!;
};

const user = (upn: string) =>
  stack.cloud.ctx.db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', stack.tenantId)
    .where('upn', '=', `${upn}@${DOMAIN}`)
    .executeTakeFirst();
const payloadsOf = async (userId: string) =>
  (
    await stack.cloud.ctx.db
      .selectFrom('oidc_payloads')
      .select('model')
      .where('tenant_id', '=', stack.tenantId)
      .where('account_id', '=', userId)
      .execute()
  ).length;

test('a delta run sends only the changed and the new user', async () => {
  await slapd.ldapModify(
    [
      `dn: ${p('ann')}\nchangetype: modify\nreplace: displayName\ndisplayName: Ann Changed\n`,
      `dn: ${p('eve')}\nobjectClass: inetOrgPerson\nuid: eve\ncn: eve\nsn: Test\nmail: eve@${DOMAIN}\nuserPassword: ${PW}\n`,
      '',
    ].join('\n'),
  );
  const run = await syncRun('delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.mode, 'delta');
  assert.equal(run.counts.usersSeen, 2, 'ann and eve only, not the three others');
  assert.equal(run.counts.usersAdded, 1);
  assert.equal(run.counts.usersUpdated, 1);
  assert.equal(run.counts.usersDeleted, 0);
  assert.equal((await user('ann'))?.display_name, 'Ann Changed');
  assert.ok(await user('eve'));
});

test('a user locked on premises loses their refresh token with the run that sees it', async () => {
  const refresh = await refreshTokenOf('ben');
  const ben = (await user('ben'))!;
  assert.ok((await payloadsOf(ben.id)) > 0, 'the grant is stored under the user');
  await slapd.ldapModify(
    `dn: ${p('ben')}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n\n`,
  );
  const run = await syncRun('delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.counts.usersSeen, 1);
  assert.equal((await user('ben'))?.enabled, 0);
  assert.equal(await payloadsOf(ben.id), 0, 'sessions, grants and tokens revoked');
  const r = await token({ grant_type: 'refresh_token', refresh_token: refresh });
  assert.equal(r.status, 400);
  assert.equal(r.body.error, 'invalid_grant');
  const audit = await stack.cloud.ctx.db
    .selectFrom('audit')
    .selectAll()
    .where('tenant_id', '=', stack.tenantId)
    .where('action', '=', 'user.grants_revoked')
    .where('target', '=', ben.id)
    .execute();
  assert.equal(audit.length, 1);
});

test('a deleted entry is removed by the full run (anchor reconciliation), not by delta', async () => {
  const refresh = await refreshTokenOf('cat');
  const cat = (await user('cat'))!;
  await slapd.ldapModify(
    [
      `dn: ${p('cat')}\nchangetype: delete\n`,
      `dn: ${p('ann')}\nchangetype: modify\nreplace: displayName\ndisplayName: Ann Again\n`,
      '',
    ].join('\n'),
  );
  const delta = await syncRun('delta');
  assert.equal(delta.counts.usersSeen, 1);
  assert.equal(delta.counts.usersDeleted, 0, 'OpenLDAP leaves nothing for a delta to see');
  assert.ok(await user('cat'));
  const full = await syncRun('full');
  assert.equal(full.mode, 'full');
  assert.equal(full.status, 'succeeded', full.error ?? '');
  assert.equal(full.counts.usersDeleted, 1);
  assert.equal(await user('cat'), undefined);
  assert.equal(await payloadsOf(cat.id), 0);
  assert.equal((await token({ grant_type: 'refresh_token', refresh_token: refresh })).status, 400);
});

test('a mark kept from another directory server makes the delta a full run', async () => {
  const file = join(stack.stateDirs[0]!, 'sync-mark.json');
  const mark = JSON.parse(readFileSync(file, 'utf8')) as { identity: string };
  assert.equal(mark.identity, slapd.url);
  writeFileSync(file, JSON.stringify({ ...mark, identity: 'ldap://another.example.test:389' }));
  await slapd.ldapModify(`dn: ${p('dee')}\nchangetype: modify\nreplace: displayName\ndisplayName: Dee\n\n`);
  const run = await syncRun('delta');
  assert.equal(run.mode, 'full');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.counts.usersSeen, 4, 'ann, ben, dee, eve');
  // The agent keeps the mark once it has the final ack, a moment after the record ended.
  await waitFor(
    'the full run to keep a mark of the server it read',
    async () => (JSON.parse(readFileSync(file, 'utf8')) as { identity: string }).identity === slapd.url,
  );
});
