/**
 * Application registrations and service principals over real HTTPS: a Global Administrator
 * creates, edits, rotates the secret of and deletes an app through the admin API, and the
 * tenant's own token endpoint follows each change (a rotated secret stops working, a deleted app
 * gets nothing). A confidential app with the reader role gets a client_credentials token from
 * the tenant's provider, lists users with it and is refused a write with the catalog's forbidden;
 * a user_admin app's change is audited under the app's name; taking the roles away refuses its
 * token at once, and its token is worthless in another tenant.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { ADMIN_CLIENT_ID } from '../src/admin/index.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { createTenant } from '../src/store/tenants.ts';
import { createCloudUser } from '../src/store/users.ts';

let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
const T = { a: '', b: '' };
let adminToken = '';
let readerToken = '';
let carolId = '';

const mint = async (tenantId: string, accountId: string): Promise<string> => {
  const t = (await cloud.oidc.forTenant(tenantId))!;
  const client = (await t.provider.Client.find(ADMIN_CLIENT_ID))!;
  const grant = new t.provider.Grant({ accountId, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid profile');
  const grantId = await grant.save();
  return new t.provider.AccessToken({
    accountId,
    client,
    grantId,
    gty: 'authorization_code',
    scope: 'openid',
  }).save();
};

const api = async (tenantId: string, token: string, method: string, path: string, body?: unknown) => {
  const res = await f(`${cloud.url}/${tenantId}/api/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: string } };
};

/** The tenant's own token endpoint, with client_secret_basic. */
const clientCredentials = async (tenantId: string, clientId: string, secret: string) => {
  const res = await f(`${cloud.url}/${tenantId}/v2.0/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials',
  });
  return { status: res.status, body: (await res.json()) as { access_token?: string; error?: string } };
};

/** The provider reads a client through a one-second cache (oidc/adapter.ts). */
const afterClientCache = () => new Promise((r) => setTimeout(r, 1300));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-apps-'));
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://localhost:0', logLevel: 'silent' },
    { env: {} },
  );
  f = pinnedFetch(cloud.caCert);
  for (const k of ['a', 'b'] as const) {
    const t = await createTenant(cloud.ctx, {
      name: k,
      domain: `${k}.example`,
      admin: { upn: `admin@${k}.example`, password: 'Admin-Passw0rd!' },
    });
    T[k] = t.tenantId;
    if (k === 'a') adminToken = await mint(t.tenantId, t.adminUserId);
  }
  const reader = await createCloudUser(cloud.ctx.db, T.a, {
    upn: 'reader@a.example',
    password: 'Reader-Passw0rd!',
    roles: ['reader'],
  });
  readerToken = await mint(T.a, reader.id);
  carolId = (
    await createCloudUser(cloud.ctx.db, T.a, { upn: 'carol@a.example', password: 'Carol-Passw0rd!' })
  ).id;
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('an app is created, edited, given a new secret and deleted through the API; the provider follows', async () => {
  const created = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'Payroll',
    redirectUris: ['https://payroll.example/cb'],
    postLogoutRedirectUris: ['https://payroll.example/bye'],
    grantTypes: ['authorization_code', 'refresh_token', 'client_credentials'],
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const id = String(created.body.clientId);
  const secret = String(created.body.clientSecret);
  assert.ok(secret.length >= 43, 'a 256-bit secret is shown once');
  assert.equal(created.body.firstParty, true);
  assert.deepEqual(created.body.postLogoutRedirectUris, ['https://payroll.example/bye']);
  const row = await cloud.ctx.db
    .selectFrom('clients')
    .selectAll()
    .where('client_id', '=', id)
    .executeTakeFirstOrThrow();
  assert.ok(!row.metadata.includes(secret), 'only the hash of the secret is stored');
  assert.ok(!readFileSync(join(dir, 'gatehouse.db')).includes(secret));

  const listed = await api(T.a, readerToken, 'GET', '/apps');
  assert.equal(listed.status, 200);
  assert.ok(!JSON.stringify(listed.body).includes(secret), 'the list never shows a secret');
  assert.ok(!JSON.stringify(listed.body).includes('sha256:'), 'nor its hash');
  assert.equal(
    ((await api(T.a, readerToken, 'GET', `/apps/${id}`)).body as { name: string }).name,
    'Payroll',
  );
  assert.equal((await clientCredentials(T.a, id, secret)).status, 200, 'the new app gets a token');

  const edited = await api(T.a, adminToken, 'PATCH', `/apps/${id}`, {
    name: 'Payroll 2',
    redirectUris: ['https://payroll2.example/cb'],
    firstParty: false,
  });
  assert.equal(edited.status, 200, JSON.stringify(edited.body));
  assert.equal(edited.body.name, 'Payroll 2');
  assert.deepEqual(edited.body.redirectUris, ['https://payroll2.example/cb']);
  assert.equal(edited.body.firstParty, false);
  assert.equal(edited.body.clientSecret, undefined, 'an edit does not change the secret');

  const rotated = await api(T.a, adminToken, 'POST', `/apps/${id}/secret`);
  assert.equal(rotated.status, 200);
  const secret2 = String(rotated.body.clientSecret);
  assert.notEqual(secret2, secret);
  await afterClientCache();
  assert.equal((await clientCredentials(T.a, id, secret)).status, 401, 'the old secret is refused');
  assert.equal((await clientCredentials(T.a, id, secret2)).status, 200, 'the new one works');

  const refusals = [
    await api(T.a, readerToken, 'POST', '/apps', { name: 'x', grantTypes: ['client_credentials'] }),
    await api(T.a, readerToken, 'DELETE', `/apps/${id}`),
  ];
  for (const r of refusals) assert.deepEqual([r.status, r.body.error], [403, 'forbidden']);
  const bad = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'SPA',
    public: true,
    grantTypes: ['client_credentials'],
    adminRoles: ['reader'],
  });
  assert.deepEqual([bad.status, bad.body.error], [400, 'validation_failed']);
  const pub = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'SPA',
    public: true,
    redirectUris: ['https://spa.example/'],
  });
  assert.equal(pub.body.clientSecret, undefined, 'a public app has no secret');
  assert.equal((await api(T.a, adminToken, 'POST', `/apps/${pub.body.clientId}/secret`)).status, 409);

  assert.equal((await api(T.b, adminToken, 'DELETE', `/apps/${id}`)).status, 403, "another tenant's admin");
  const deleted = await api(T.a, adminToken, 'DELETE', `/apps/${id}`);
  assert.deepEqual(deleted.body, { deleted: id });
  assert.equal((await api(T.a, adminToken, 'GET', `/apps/${id}`)).status, 404);
  await afterClientCache();
  assert.equal((await clientCredentials(T.a, id, secret2)).status, 401, 'a deleted app gets no token');

  const actions = (await api(T.a, readerToken, 'GET', '/audit?limit=20')).body as unknown as {
    action: string;
    actor: string;
    target: string;
  }[];
  const mine = actions.filter((a) => a.target === id).map((a) => `${a.actor} ${a.action}`);
  assert.deepEqual(mine.reverse(), [
    'admin@a.example app.create',
    'admin@a.example app.update',
    'admin@a.example app.secret.rotate',
    'admin@a.example app.delete',
  ]);
  assert.ok(!JSON.stringify(actions).includes(secret2) && !JSON.stringify(actions).includes(secret));
});

test('a service principal with the reader role lists users and is refused a write', async () => {
  const sp = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'Inventory script',
    grantTypes: ['client_credentials'],
    adminRoles: ['reader'],
  });
  assert.equal(sp.status, 200, JSON.stringify(sp.body));
  const token = await clientCredentials(T.a, String(sp.body.clientId), String(sp.body.clientSecret));
  assert.equal(token.status, 200, JSON.stringify(token.body));
  const at = String(token.body.access_token);

  const me = await api(T.a, at, 'GET', '/me');
  assert.equal(me.body.kind, 'service_principal');
  assert.deepEqual(me.body.roles, ['reader']);
  const users = await api(T.a, at, 'GET', '/users');
  assert.equal(users.status, 200);
  assert.ok(JSON.stringify(users.body).includes('carol@a.example'), 'the reader lists users');

  const write = await api(T.a, at, 'POST', `/users/${carolId}/unlock`);
  assert.equal(write.status, 403);
  assert.equal(write.body.error, 'forbidden', 'the catalog error');
  assert.equal(
    (await api(T.a, at, 'POST', '/apps', { name: 'x', grantTypes: ['client_credentials'] })).status,
    403,
  );
  assert.equal((await api(T.b, at, 'GET', '/users')).status, 403, 'useless in another tenant');

  // Roles are read on every call: taking them away refuses the token it already holds.
  await api(T.a, adminToken, 'PATCH', `/apps/${sp.body.clientId}`, { adminRoles: [] });
  assert.deepEqual(
    [(await api(T.a, at, 'GET', '/users')).status, (await api(T.a, at, 'GET', '/users')).body.error],
    [403, 'forbidden'],
  );
  await api(T.a, adminToken, 'DELETE', `/apps/${sp.body.clientId}`);
  assert.equal((await api(T.a, at, 'GET', '/users')).status, 401, 'a deleted app is not a caller');
});

test("a service principal's changes are audited under its name", async () => {
  const sp = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'Helpdesk bot',
    grantTypes: ['client_credentials'],
    adminRoles: ['user_admin'],
  });
  const id = String(sp.body.clientId);
  const token = await clientCredentials(T.a, id, String(sp.body.clientSecret));
  const at = String(token.body.access_token);
  const unlock = await api(T.a, at, 'POST', `/users/${carolId}/unlock`);
  assert.equal(unlock.status, 200, JSON.stringify(unlock.body));
  const [last] = (await api(T.a, readerToken, 'GET', '/audit?limit=1')).body as unknown as {
    actor: string;
    target: string;
  }[];
  assert.equal(last?.actor, `Helpdesk bot (app ${id})`);
  assert.equal(last?.target, 'carol@a.example');
  // A user token is not a service principal's and the other way round: the admin center's own
  // client gets no client_credentials token (it is public).
  const res = await f(`${cloud.url}/${T.a}/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&client_id=${ADMIN_CLIENT_ID}`,
  });
  assert.ok(res.status >= 400);
});

test('the ID token algorithm and the groups claim are set through POST and PATCH /apps', async () => {
  const created = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'Legacy portal',
    redirectUris: ['https://legacy.example/cb'],
    idTokenAlg: 'RS256',
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  assert.equal(created.body.idTokenAlg, 'RS256');
  const id = String(created.body.clientId);
  const t = (await cloud.oidc.forTenant(T.a))!;
  // What the provider signs the app's ID tokens with (the code flow itself: test/e2e-apis.test.ts).
  assert.equal((await t.provider.Client.find(id))?.idTokenSignedResponseAlg, 'RS256');
  const plain = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'Plain',
    redirectUris: ['https://plain.example/cb'],
  });
  assert.equal(plain.body.idTokenAlg, 'ES256', 'the default');

  const patched = await api(T.a, adminToken, 'PATCH', `/apps/${id}`, {
    idTokenAlg: 'ES256',
    groups: { include: 'security', format: 'name' },
  });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.equal(patched.body.idTokenAlg, 'ES256');
  assert.deepEqual(patched.body.groups, { include: 'security', format: 'name', limit: 200, assigned: [] });
  assert.equal(patched.body.name, 'Legacy portal', 'the other fields stay');
  await afterClientCache();
  const client = (await t.provider.Client.find(id)) as unknown as {
    idTokenSignedResponseAlg: string;
    metadata(): Record<string, unknown>;
  };
  assert.equal(client.idTokenSignedResponseAlg, 'ES256');
  assert.deepEqual((client.metadata() as { gatehouse_groups?: unknown }).gatehouse_groups, {
    include: 'security',
    format: 'name',
    limit: 200,
    assigned: [],
  });

  for (const body of [{ idTokenAlg: 'HS256' }, { idTokenAlg: 'rs256' }, { groups: { include: 'some' } }]) {
    const bad = await api(T.a, adminToken, 'PATCH', `/apps/${id}`, body);
    assert.deepEqual([bad.status, bad.body.error], [400, 'validation_failed'], JSON.stringify(body));
  }
  const badCreate = await api(T.a, adminToken, 'POST', '/apps', {
    name: 'x',
    redirectUris: ['https://x.example/cb'],
    idTokenAlg: 'none',
  });
  assert.deepEqual([badCreate.status, badCreate.body.error], [400, 'validation_failed']);
  assert.equal((await api(T.a, readerToken, 'GET', `/apps/${id}`)).body.idTokenAlg, 'ES256');

  const doc = (await (await f(`${cloud.url}/${T.a}/api/v1/openapi.json`)).json()) as {
    paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
  };
  for (const [path, method] of [
    ['/apps', 'post'],
    ['/apps/{clientId}', 'patch'],
  ] as const) {
    const schema = JSON.stringify(
      doc.paths[path]?.[method]?.requestBody?.content['application/json']?.schema,
    );
    assert.match(schema, /"idTokenAlg":\{[^}]*"enum":\["ES256","RS256"\]/, `${method} ${path} documents it`);
  }
  assert.match(
    JSON.stringify(doc.paths['/apps/{clientId}']?.patch?.requestBody),
    /"groups"/,
    'PATCH documents groups',
  );
});
