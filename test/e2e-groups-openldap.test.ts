/**
 * Groups in tokens, end to end on OpenLDAP: slapd with nested groupOfNames (and a cycle), the
 * real agent, the cloud. A signed-in user's verified ID token carries every group they are in at
 * any depth, as each application asked (all / security / assigned; ids or names); past the
 * application's limit the claim becomes a pointer that the application follows with the user's
 * access token; a relying party lets Finance members in and no one else; "Sync now" answers with
 * what the run did, and the runs are listed (API and CLI) with their counts.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, type JWTPayload, jwtVerify } from 'jose';
import { ADMIN_CLIENT_ID } from '../apps/cloud/src/admin/index.ts';
import { main } from '../apps/cloud/src/cli.ts';
import { createClient, type GroupsClaimSetting } from '../apps/cloud/src/store/clients.ts';
import { listGroups } from '../apps/cloud/src/store/groups.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'example.test';
const PW = `Grp-${Math.random().toString(36).slice(2, 8)}-Pw1`;
const USERS = ['ann', 'ben', 'cat'];
let slapd: SlapdInstance;
let stack: Stack;
let f: typeof fetch;
let ids: Record<string, string>;

const g = (cn: string) => `cn=${cn},ou=groups,${slapd.baseDn}`;
const p = (u: string) => `uid=${u},${slapd.peopleDn}`;

before(async () => {
  slapd = await startSlapd({ users: USERS.map((uid) => ({ uid, password: PW, mail: `${uid}@${DOMAIN}` })) });
  // Finance ⊃ Ledger ⊃ Auditors ⊃ ann; Sales ⊃ ben; Loop1 ⊃ Loop2 ⊃ Loop1 ⊃ cat.
  await slapd.ldapModify(
    [
      `dn: ou=groups,${slapd.baseDn}\nobjectClass: organizationalUnit\nou: groups\n`,
      `dn: ${g('Auditors')}\nobjectClass: groupOfNames\ncn: Auditors\nmember: ${p('ann')}\n`,
      `dn: ${g('Ledger')}\nobjectClass: groupOfNames\ncn: Ledger\nmember: ${g('Auditors')}\n`,
      `dn: ${g('Finance')}\nobjectClass: groupOfNames\ncn: Finance\nmember: ${g('Ledger')}\n`,
      `dn: ${g('Sales')}\nobjectClass: groupOfNames\ncn: Sales\nmember: ${p('ben')}\n`,
      `dn: ${g('Loop1')}\nobjectClass: groupOfNames\ncn: Loop1\nmember: ${p('cat')}\n`,
      `dn: ${g('Loop2')}\nobjectClass: groupOfNames\ncn: Loop2\nmember: ${g('Loop1')}\n`,
      `dn: ${g('Loop1')}\nchangetype: modify\nadd: member\nmember: ${g('Loop2')}\n`,
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
  });
  f = pinnedFetch(stack.cloud.caCert);
  await stack.firstSync();
  const { groups } = await listGroups(stack.cloud.ctx.db, stack.tenantId);
  ids = Object.fromEntries(groups.map((x) => [x.name, x.id]));
});

after(async () => {
  await stack?.stop();
  await slapd?.stop();
});

const app = async (groups: Partial<GroupsClaimSetting>) =>
  (
    await createClient(stack.cloud.ctx.db, stack.tenantId, {
      name: `App ${JSON.stringify(groups)}`,
      redirectUris: ['https://app.example.test/callback'],
      public: true,
      grantTypes: ['authorization_code', 'password'],
      groups: groups as GroupsClaimSetting,
    })
  ).clientId;

/** The password grant, then the ID token verified against the tenant's published keys. */
const signIn = async (clientId: string, user: string) => {
  const res = await f(`${stack.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: clientId,
      username: `${user}@${DOMAIN}`,
      password: PW,
      scope: 'openid profile',
    }).toString(),
  });
  const body = (await res.json()) as { id_token: string; access_token: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  const jwks = (await (await f(`${stack.issuer}/jwks`)).json()) as Parameters<typeof createLocalJWKSet>[0];
  const { payload } = await jwtVerify(body.id_token, createLocalJWKSet(jwks), {
    issuer: stack.issuer,
    audience: clientId,
  });
  return { claims: payload as JWTPayload & Record<string, unknown>, accessToken: body.access_token };
};

/** The relying party: only members of Finance (by its object id) may open the ledger. */
const ledgerAllows = (claims: Record<string, unknown>) =>
  Array.isArray(claims.groups) && claims.groups.includes(ids.Finance);

test('nested membership, resolved on premises, is in the verified ID token as group ids', async () => {
  const client = await app({ include: 'all' });
  const ann = await signIn(client, 'ann');
  assert.deepEqual(
    new Set(ann.claims.groups as string[]),
    new Set([ids.Auditors, ids.Ledger, ids.Finance]),
    'three levels deep',
  );
  const cat = await signIn(client, 'cat');
  assert.deepEqual(new Set(cat.claims.groups as string[]), new Set([ids.Loop1, ids.Loop2]), 'a cycle ends');
  // The relying party authorises by group.
  assert.equal(ledgerAllows(ann.claims), true, 'ann (Finance through Ledger and Auditors) gets in');
  assert.equal(ledgerAllows((await signIn(client, 'ben')).claims), false, 'ben (Sales) does not');
  // userinfo carries the same claim.
  const ui = await f(`${stack.issuer}/me`, { headers: { authorization: `Bearer ${ann.accessToken}` } });
  assert.deepEqual(
    new Set(((await ui.json()) as { groups: string[] }).groups),
    new Set(ann.claims.groups as string[]),
  );
});

test('per application: names instead of ids, only assigned groups, and none at all', async () => {
  const byName = await signIn(await app({ include: 'all', format: 'name' }), 'ann');
  assert.deepEqual((byName.claims.groups as string[]).sort(), ['Auditors', 'Finance', 'Ledger']);
  const assigned = await signIn(
    await app({ include: 'assigned', assigned: [ids.Finance!, ids.Sales!] }),
    'ann',
  );
  assert.deepEqual(assigned.claims.groups, [ids.Finance]);
  const none = await signIn(await app({}), 'ann');
  assert.equal(none.claims.groups, undefined);
});

test('past the limit the claim is a pointer; the endpoint answers the user with their access token', async () => {
  const client = await app({ include: 'all', limit: 2 });
  const ann = await signIn(client, 'ann');
  assert.equal(ann.claims.groups, undefined, 'no groups claim past the limit');
  const names = ann.claims._claim_names as Record<string, string>;
  const sources = ann.claims._claim_sources as Record<string, { endpoint: string }>;
  const endpoint = sources[names.groups!]!.endpoint;
  assert.equal(endpoint, `${stack.cloud.url}/${stack.tenantId}/api/v1/users/${ann.claims.sub}/groups`);
  const res = await f(endpoint, { headers: { authorization: `Bearer ${ann.accessToken}` } });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { value: { id: string; displayName: string }[]; groups: string[] };
  assert.deepEqual(new Set(body.groups), new Set([ids.Auditors, ids.Ledger, ids.Finance]));
  assert.ok(body.groups.includes(ids.Finance!), 'the relying party can still authorise');
  assert.deepEqual(body.value.map((x) => x.displayName).sort(), ['Auditors', 'Finance', 'Ledger']);
  // Someone else's groups are not the user's to read.
  const ben = await signIn(client, 'ben');
  const other = await f(endpoint, { headers: { authorization: `Bearer ${ben.accessToken}` } });
  assert.equal(other.status, 401);
  assert.equal((await f(endpoint)).status, 401);
});

test('Sync now answers with what the run did; a membership change reaches the token', async () => {
  await slapd.ldapModify(`dn: ${g('Ledger')}\nchangetype: modify\nadd: member\nmember: ${p('ben')}\n`);
  const t = (await stack.cloud.oidc.forTenant(stack.tenantId))!;
  const admin = await stack.cloud.ctx.db
    .selectFrom('users')
    .select('id')
    .where('tenant_id', '=', stack.tenantId)
    .where('upn', '=', `admin@${DOMAIN}`)
    .executeTakeFirstOrThrow();
  const adminClient = await t.provider.Client.find(ADMIN_CLIENT_ID);
  const grant = new t.provider.Grant({ accountId: admin.id, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid');
  const token = await new t.provider.AccessToken({
    accountId: admin.id,
    client: adminClient!,
    grantId: await grant.save(),
    gty: 'authorization_code',
    scope: 'openid',
  }).save();
  const api = (path: string, init: RequestInit = {}) =>
    f(`${stack.cloud.url}/${stack.tenantId}/api/v1${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}` },
    });
  const res = await api('/sync?wait=60', { method: 'POST' });
  const body = (await res.json()) as {
    runId: string;
    run: { status: string; counts: Record<string, number> };
  };
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.run.status, 'succeeded');
  assert.equal(body.run.counts.usersSeen, 3);
  assert.equal(body.run.counts.groupsSeen, 6);
  assert.equal(body.run.counts.membershipsChanged, 1, 'ben joined Ledger (and so Finance)');
  assert.equal(body.run.counts.usersAdded, 0);
  const ben = await signIn(await app({ include: 'all' }), 'ben');
  assert.equal(ledgerAllows(ben.claims), true, 'ben is now in Finance through Ledger');

  const runs = (await (await api('/sync/runs')).json()) as {
    id: string;
    status: string;
    counts: Record<string, number>;
  }[];
  assert.equal(runs[0]!.id, body.runId);
  assert.equal(runs.at(-1)!.counts.usersAdded, 3, 'the first run added the three users');
  assert.equal(runs.at(-1)!.counts.groupsAdded, 6);
  const groups = (await (await api('/groups?search=fin')).json()) as {
    groups: { displayName: string; members: number }[];
  };
  assert.deepEqual(
    groups.groups.map((x) => [x.displayName, x.members]),
    [['Finance', 2]],
  );
  const userGroups = (await (await api(`/users/${ben.claims.sub}/groups`)).json()) as { value: unknown[] };
  assert.equal(userGroups.value.length, 3, 'Sales, Ledger, Finance');

  // The operator CLI lists the same runs and groups.
  const out: string[] = [];
  const io = {
    stdout: (s: string) => void out.push(s),
    stderr: (s: string) => void out.push(s),
    readStdin: async () => '',
  };
  const env = {
    GATEHOUSE_CLOUD_DATA_DIR: stack.cloud.ctx.config.dataDir,
    GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
  };
  assert.equal(await main(['sync', 'runs', '--tenant', stack.tenantId, '--json'], io, env), 0, out.join(''));
  const cliRuns = JSON.parse(out.pop()!) as { id: string }[];
  assert.equal(cliRuns[0]!.id, body.runId);
  assert.equal(await main(['groups', 'list', '--tenant', stack.tenantId], io, env), 0, out.join(''));
  assert.match(out.pop()!, /Finance\s.*security\s+2/);
});
