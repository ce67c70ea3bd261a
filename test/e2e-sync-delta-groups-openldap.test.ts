/**
 * Group membership changes by delta on OpenLDAP (slapd, the real agent, the cloud): a user added
 * to a nested group and a user removed from a group reach the cloud by a delta run (the record
 * says delta), and the groups claim of a fresh token follows, at every depth; a group taken out
 * of its parent takes its users out of the parent; `gatehouse-agent sync --delta` previews a delta
 * without sending it or moving the mark; a delta after that finds nothing to do (the
 * mark moved past the groups it applied).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createClient } from '../apps/cloud/src/store/clients.ts';
import { listGroups } from '../apps/cloud/src/store/groups.ts';
import { ROOT, runNode } from './harness/children.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'example.test';
const PW = `Gdl-${Math.random().toString(36).slice(2, 8)}-Pw1`;
const USERS = ['ann', 'ben', 'cat'];
let slapd: SlapdInstance;
let stack: Stack;
let f: typeof fetch;
let clientId: string;
let ids: Record<string, string>;

const g = (cn: string) => `cn=${cn},ou=groups,${slapd.baseDn}`;
const p = (u: string) => `uid=${u},${slapd.peopleDn}`;

before(async () => {
  slapd = await startSlapd({ users: USERS.map((uid) => ({ uid, password: PW, mail: `${uid}@${DOMAIN}` })) });
  // Finance ⊃ Ledger ⊃ Auditors ⊃ ann; Sales ⊃ ben, cat.
  await slapd.ldapModify(
    [
      `dn: ou=groups,${slapd.baseDn}\nobjectClass: organizationalUnit\nou: groups\n`,
      `dn: ${g('Auditors')}\nobjectClass: groupOfNames\ncn: Auditors\nmember: ${p('ann')}\n`,
      `dn: ${g('Ledger')}\nobjectClass: groupOfNames\ncn: Ledger\nmember: ${g('Auditors')}\n`,
      `dn: ${g('Finance')}\nobjectClass: groupOfNames\ncn: Finance\nmember: ${g('Ledger')}\n`,
      `dn: ${g('Sales')}\nobjectClass: groupOfNames\ncn: Sales\nmember: ${p('ben')}\nmember: ${p('cat')}\n`,
      '',
    ].join('\n'),
  );
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
      extra: { groupBaseDns: [`ou=groups,${slapd.baseDn}`] },
    },
    expectUsers: USERS.map((u) => `${u}@${DOMAIN}`),
    agent: { sync: { deltaIntervalMinutes: 0 } },
  });
  f = pinnedFetch(stack.cloud.caCert);
  await stack.firstSync();
  ids = Object.fromEntries(
    (await listGroups(stack.cloud.ctx.db, stack.tenantId)).groups.map((x) => [x.name, x.id]),
  );
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
  await slapd?.stop();
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
      username: `${user}@${DOMAIN}`,
      password: PW,
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

test('a user added to a nested group and one removed from a group reach the token by a delta run', async () => {
  assert.deepEqual(await groupsOf('ben'), ['Sales']);
  assert.deepEqual(await groupsOf('cat'), ['Sales']);
  await slapd.ldapModify(
    [
      `dn: ${g('Auditors')}\nchangetype: modify\nadd: member\nmember: ${p('ben')}\n`,
      `dn: ${g('Sales')}\nchangetype: modify\ndelete: member\nmember: ${p('cat')}\n`,
      '',
    ].join('\n'),
  );
  // The agent's preview reads the same delta and sends nothing (nor moves the mark).
  const markFile = join(stack.stateDirs[0]!, 'sync-mark.json');
  const mark = readFileSync(markFile, 'utf8');
  const preview = await runNode(join(ROOT, 'apps/agent/src/main.ts'), [
    'sync',
    '--delta',
    '--json',
    '--state-dir',
    stack.stateDirs[0]!,
  ]);
  assert.equal(preview.code, 0, preview.stderr);
  const p1 = JSON.parse(preview.stdout) as { mode: string; groups: { name: string }[]; groupMembers: object };
  assert.equal(p1.mode, 'delta');
  assert.deepEqual(p1.groups.map((x) => x.name).sort(), ['Auditors', 'Sales']);
  assert.equal(Object.keys(p1.groupMembers).length, 4, 'Auditors, Ledger, Finance (above it) and Sales');
  assert.equal(readFileSync(markFile, 'utf8'), mark);
  const run = await syncRun('delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.mode, 'delta');
  assert.equal(run.counts.usersSeen, 0, 'no user entry changed');
  assert.equal(run.counts.groupsSeen, 2, 'Auditors and Sales');
  assert.equal(run.counts.membershipsChanged, 2, 'ben and cat');
  assert.deepEqual(await groupsOf('ben'), ['Auditors', 'Finance', 'Ledger', 'Sales'], 'at every depth');
  assert.deepEqual(await groupsOf('cat'), [], 'cat left Sales');
  assert.deepEqual(await groupsOf('ann'), ['Auditors', 'Finance', 'Ledger'], 'ann untouched');
});

test('a group taken out of its parent takes its users out of the parent, by delta', async () => {
  // groupOfNames needs a member: Ledger is replaced by cat.
  await slapd.ldapModify(`dn: ${g('Finance')}\nchangetype: modify\nreplace: member\nmember: ${p('cat')}\n\n`);
  const run = await syncRun('delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.mode, 'delta');
  assert.equal(run.counts.membershipsChanged, 3, 'ann and ben left Finance, cat joined');
  assert.deepEqual(await groupsOf('ann'), ['Auditors', 'Ledger']);
  assert.deepEqual(await groupsOf('ben'), ['Auditors', 'Ledger', 'Sales']);
  assert.deepEqual(await groupsOf('cat'), ['Finance']);
  const finance = (await listGroups(stack.cloud.ctx.db, stack.tenantId, { search: 'Finance' })).groups[0]!;
  assert.equal(finance.id, ids.Finance);
  assert.equal(finance.members, 1);
});

test('the mark moves past the groups a delta applied: the next delta has nothing to do', async () => {
  const run = await syncRun('delta');
  assert.equal(run.mode, 'delta');
  assert.equal(run.status, 'succeeded', run.error ?? '');
  assert.equal(run.counts.groupsSeen, 0);
  assert.equal(run.counts.membershipsChanged, 0);
  // And a full run agrees with what the deltas left.
  const full = await syncRun('full');
  assert.equal(full.status, 'succeeded', full.error ?? '');
  assert.equal(full.counts.membershipsChanged, 0, 'the deltas left the memberships a full run computes');
});
