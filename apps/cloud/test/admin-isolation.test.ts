/**
 * The admin API over real HTTPS: every route in the OpenAPI document, called by tenant A's Global
 * Administrator on tenant B, is refused (403/404) and changes nothing in B; each role gets exactly
 * its permissions; every change writes an audit row with the admin's UPN.
 * Tokens are real access tokens minted by each tenant's own oidc-provider for the admin center
 * client (the browser flow that obtains them is covered by test/e2e-admin-center.test.ts), and
 * client_credentials tokens of service principals (apps with admin roles), which must get exactly
 * the same permissions as a user with the same role.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { ADMIN_CLIENT_ID } from '../src/admin/index.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { registerAgent } from '../src/store/agents.ts';
import { createApi } from '../src/store/apis.ts';
import { createClient } from '../src/store/clients.ts';
import { createTenant } from '../src/store/tenants.ts';
import { createCloudUser, type Role } from '../src/store/users.ts';

let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;

interface Fixture {
  id: string;
  domain: string;
  tokens: Record<'global_admin' | Role | 'none', string>;
  upns: Record<string, string>;
  agentIds: string[];
  userId: string;
  /** A registered API, and more to delete (one per call). */
  apiId: string;
  deletableApiIds: string[];
  /** Service principals' client_credentials tokens, by admin role ('none': an app without one). */
  spTokens: Record<Role | 'none', string>;
  /** An app every route but DELETE works on, and apps for the DELETE calls to use up. */
  appId: string;
  deletableAppIds: string[];
}
const A = {} as Fixture;
const B = {} as Fixture;
type Op = { path: string; method: string; permission: string; roles: string[] };
let ops: Op[] = [];

const mint = async (tenantId: string, accountId: string): Promise<string> => {
  const t = (await cloud.oidc.forTenant(tenantId))!;
  const client = await t.provider.Client.find(ADMIN_CLIENT_ID);
  assert.ok(client, 'the admin center client exists in every tenant');
  const grant = new t.provider.Grant({ accountId, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid profile');
  const grantId = await grant.save();
  const at = new t.provider.AccessToken({
    accountId,
    client,
    grantId,
    gty: 'authorization_code',
    scope: 'openid profile',
  });
  return at.save();
};

/** A client_credentials token of an app of the tenant, as the token endpoint mints it. */
const mintServicePrincipal = async (tenantId: string, role: Role | 'none'): Promise<string> => {
  const { clientId } = await createClient(cloud.ctx.db, tenantId, {
    name: `${role} service principal`,
    grantTypes: ['client_credentials'],
    adminRoles: role === 'none' ? [] : [role],
  });
  const t = (await cloud.oidc.forTenant(tenantId))!;
  const client = (await t.provider.Client.find(clientId))!;
  return new t.provider.ClientCredentials({ client }).save();
};

const makeApps = async (fx: Fixture) => {
  fx.spTokens = {} as Fixture['spTokens'];
  for (const role of ['global_admin', 'hybrid_identity_admin', 'user_admin', 'reader', 'none'] as const)
    fx.spTokens[role] = await mintServicePrincipal(fx.id, role);
  const app = (name: string) =>
    createClient(cloud.ctx.db, fx.id, { name, redirectUris: ['https://app.example/cb'] });
  fx.appId = (await app('kept')).clientId;
  fx.deletableAppIds = [];
  for (let i = 0; i < 12; i++) fx.deletableAppIds.push((await app(`deletable ${i}`)).clientId);
  const api = async (name: string) =>
    (
      await createApi(
        cloud.ctx.db,
        fx.id,
        { name, identifier: `https://${name}.${fx.domain}/`, scopes: ['kept.read'] },
        Date.now(),
      )
    ).id;
  fx.apiId = await api('kept');
  fx.deletableApiIds = [];
  for (let i = 0; i < 12; i++) fx.deletableApiIds.push(await api(`deletable${i}`));
};

const makeTenant = async (fx: Fixture, label: string) => {
  fx.domain = `${label}.example`;
  const t = await createTenant(cloud.ctx, {
    name: label,
    domain: fx.domain,
    admin: { upn: `admin@${fx.domain}`, password: 'Admin-Passw0rd!' },
  });
  fx.id = t.tenantId;
  fx.tokens = {} as Fixture['tokens'];
  fx.upns = { global_admin: `admin@${fx.domain}` };
  fx.tokens.global_admin = await mint(fx.id, t.adminUserId);
  for (const role of ['hybrid_identity_admin', 'user_admin', 'reader', 'none'] as const) {
    const u = await createCloudUser(cloud.ctx.db, fx.id, {
      upn: `${role.replace(/_/g, '')}@${fx.domain}`,
      password: 'Some-Passw0rd!',
      roles: role === 'none' ? [] : [role],
    });
    fx.tokens[role] = await mint(fx.id, u.id);
    fx.upns[role] = u.upn;
  }
  fx.userId = (
    await createCloudUser(cloud.ctx.db, fx.id, { upn: `carol@${fx.domain}`, password: 'Carol-Passw0rd!' })
  ).id;
  fx.agentIds = [];
  for (let i = 0; i < 4; i++) {
    const a = await registerAgent(cloud.ctx.db, {
      tenantId: fx.id,
      hostname: `dc${i}.${fx.domain}`,
      version: '0.1.0',
      certSerial: `${label}-${i}`,
      certNotAfter: Date.now() + 86_400_000,
      hpkePublicKey: 'A'.repeat(43),
    });
    fx.agentIds.push(a.id);
  }
  await makeApps(fx);
};

const BODIES: Record<string, unknown> = {
  'PATCH /settings': { legacyAuth: true, lockoutThreshold: 5 },
  'POST /registration-tokens': {},
  'POST /domains': { name: 'added.example' },
  'PATCH /domains/{name}': { kind: 'federated', federationUrl: 'https://idp.example/sso' },
  'POST /users/{userId}/password': { password: 'New-Passw0rd!' },
  'POST /apps': { name: 'Added app', grantTypes: ['client_credentials'] },
  'PATCH /apps/{clientId}': { name: 'Renamed app', postLogoutRedirectUris: ['https://app.example/bye'] },
  'POST /apis': { name: 'Added API', identifier: 'https://added.example/api', scopes: ['added.read'] },
  'POST /apis/{apiId}/grants': (t: Fixture) => ({ clientId: t.appId, scopes: ['kept.read'] }),
};

/** Calls an operation with the ids of `target` in the path (agents are used up one per call). */
const call = async (op: Op, target: Fixture, token: string | null) => {
  const path = op.path
    .replace('{agentId}', () => target.agentIds.shift() ?? 'none-left')
    .replace('{userId}', target.userId)
    .replace('{name}', target.domain)
    .replace('{clientId}', () =>
      op.method === 'delete' ? (target.deletableAppIds.shift() ?? 'none-left') : target.appId,
    )
    .replace('{apiId}', () =>
      op.method === 'delete' ? (target.deletableApiIds.shift() ?? 'none-left') : target.apiId,
    );
  const key = `${op.method.toUpperCase()} ${op.path}`;
  const given = BODIES[key];
  const body = typeof given === 'function' ? given(target) : given;
  const res = await f(`${cloud.url}/${target.id}/api/v1${path}`, {
    method: op.method.toUpperCase(),
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text };
};

/** Everything of a tenant an admin call could change. */
const snapshot = async (tenantId: string) => {
  const db = cloud.ctx.db;
  const rows = await Promise.all([
    db.selectFrom('tenants').selectAll().where('id', '=', tenantId).execute(),
    db.selectFrom('domains').selectAll().where('tenant_id', '=', tenantId).orderBy('name').execute(),
    db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId).orderBy('id').execute(),
    db.selectFrom('agents').selectAll().where('tenant_id', '=', tenantId).orderBy('id').execute(),
    db.selectFrom('registration_tokens').selectAll().where('tenant_id', '=', tenantId).execute(),
    db.selectFrom('audit').selectAll().where('tenant_id', '=', tenantId).orderBy('id').execute(),
    db.selectFrom('lockout_counters').selectAll().where('tenant_id', '=', tenantId).execute(),
    db.selectFrom('clients').selectAll().where('tenant_id', '=', tenantId).orderBy('client_id').execute(),
    db.selectFrom('apis').selectAll().where('tenant_id', '=', tenantId).orderBy('id').execute(),
    db.selectFrom('api_grants').selectAll().where('tenant_id', '=', tenantId).orderBy('api_id').execute(),
    db.selectFrom('signing_keys').selectAll().where('tenant_id', '=', tenantId).orderBy('kid').execute(),
  ]);
  return JSON.stringify(rows);
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-admin-'));
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://localhost:0', logLevel: 'silent' },
    { env: {} },
  );
  f = pinnedFetch(cloud.caCert);
  await makeTenant(A, 'tenant-a');
  await makeTenant(B, 'tenant-b');
  const doc = (await (await f(`${cloud.url}/${B.id}/api/v1/openapi.json`)).json()) as {
    openapi: string;
    paths: Record<string, Record<string, { 'x-permission': string; 'x-roles': string[] }>>;
  };
  assert.equal(doc.openapi, '3.1.0');
  ops = Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, o]) => ({
      path,
      method,
      permission: o['x-permission'],
      roles: o['x-roles'],
    })),
  );
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the OpenAPI document lists every admin route', () => {
  const names = ops.map((o) => `${o.method.toUpperCase()} ${o.path}`);
  for (const expected of [
    'GET /overview',
    'PATCH /settings',
    'GET /agents',
    'DELETE /agents/{agentId}',
    'POST /registration-tokens',
    'GET /agent-package',
    'GET /domains',
    'POST /domains',
    'POST /domains/{name}/verify',
    'PATCH /domains/{name}',
    'GET /users',
    'POST /users/{userId}/unlock',
    'POST /users/{userId}/password',
    'GET /signins',
    'GET /audit',
    'POST /sync',
    'GET /sync/runs',
    'GET /sync/runs/{runId}',
    'GET /groups',
    'GET /users/{userId}/groups',
    'GET /apps',
    'POST /apps',
    'GET /apps/{clientId}',
    'PATCH /apps/{clientId}',
    'POST /apps/{clientId}/secret',
    'DELETE /apps/{clientId}',
    'GET /apis',
    'POST /apis',
    'GET /apis/{apiId}',
    'DELETE /apis/{apiId}',
    'POST /apis/{apiId}/grants',
    'GET /keys',
    'POST /keys/rotate',
  ]) {
    assert.ok(names.includes(expected), `${expected} is documented`);
  }
  for (const o of ops) {
    if (o.method !== 'get') continue;
    assert.ok(BODIES[`${o.method.toUpperCase()} ${o.path}`] === undefined);
  }
});

test("tenant A's global administrator can do nothing in tenant B, and B is unchanged", async () => {
  const before = await snapshot(B.id);
  for (const op of ops) {
    for (const token of [A.tokens.global_admin, A.spTokens.global_admin]) {
      const r = await call(op, B, token);
      assert.ok(
        r.status === 403 || r.status === 404,
        `${op.method} ${op.path} on B with A's token: ${r.status} ${r.text.slice(0, 200)}`,
      );
    }
  }
  // A token of B's own reader works on B but not on A either way round.
  assert.equal(
    (await call({ ...ops[0]!, path: '/overview', method: 'get' }, A, B.tokens.reader)).status,
    403,
  );
  assert.equal(await snapshot(B.id), before, 'nothing in tenant B changed');
});

test('no token is 401; a user without an admin role is 403', async () => {
  for (const op of ops) {
    assert.equal((await call(op, B, null)).status, 401, `${op.method} ${op.path} without a token`);
    assert.equal((await call(op, B, 'not-a-token')).status, 401);
    assert.equal((await call(op, B, B.tokens.none)).status, 403, `${op.method} ${op.path} as a plain user`);
    assert.equal((await call(op, B, B.spTokens.none)).status, 403, `${op.method} ${op.path} as an app`);
  }
});

test('each role gets exactly its permissions, as a user or a service principal; a reader changes nothing', async () => {
  for (const [role, token] of (['reader', 'user_admin', 'hybrid_identity_admin'] as const).flatMap((r) => [
    [r, B.tokens[r]] as const,
    [r, B.spTokens[r]] as const,
  ])) {
    const before = await snapshot(B.id);
    for (const op of ops) {
      const r = await call(op, B, token);
      const allowed = op.roles.includes(role);
      if (allowed) {
        assert.ok(
          ![401, 403].includes(r.status),
          `${role} may ${op.method} ${op.path}: ${r.status} ${r.text}`,
        );
        assert.ok(r.status < 500, `${op.method} ${op.path}: ${r.status} ${r.text}`);
      } else {
        assert.equal(r.status, 403, `${role} may not ${op.method} ${op.path}: ${r.status}`);
      }
    }
    if (role === 'reader') assert.equal(await snapshot(B.id), before, 'a reader changed nothing');
  }
});

test('every change by an administrator is in the audit log with their UPN', async () => {
  for (const op of ops.filter((o) => o.method !== 'get' || o.path === '/agent-package')) {
    const beforeCount = (await cloud.ctx.db
      .selectFrom('audit')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenant_id', '=', A.id)
      .executeTakeFirstOrThrow()) as { n: number };
    const r = await call(op, A, A.tokens.global_admin);
    if (r.status >= 300) {
      // Refused by the state (no agent connected, no DNS record), not by permissions.
      assert.ok([409, 503].includes(r.status), `${op.method} ${op.path}: ${r.status} ${r.text}`);
      continue;
    }
    const res = await f(`${cloud.url}/${A.id}/api/v1/audit?limit=1`, {
      headers: { authorization: `Bearer ${A.tokens.reader}` },
    });
    const [last] = (await res.json()) as { actor: string; action: string; detail: unknown }[];
    const after = (await cloud.ctx.db
      .selectFrom('audit')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenant_id', '=', A.id)
      .executeTakeFirstOrThrow()) as { n: number };
    assert.equal(Number(after.n), Number(beforeCount.n) + 1, `${op.method} ${op.path} wrote one audit row`);
    assert.equal(last?.actor, A.upns.global_admin);
    assert.ok(!JSON.stringify(last).includes('New-Passw0rd!'), 'no password in the audit log');
  }
});

test('turning pass-through authentication on with no active agent is refused', async () => {
  const res = await f(`${cloud.url}/${A.id}/api/v1/settings`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${A.tokens.global_admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ptaEnabled: true }),
  });
  assert.equal(res.status, 409);
  assert.equal(((await res.json()) as { error: string }).error, 'no_active_agent');
  const bad = await f(`${cloud.url}/${A.id}/api/v1/settings`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${A.tokens.global_admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ lockoutThreshold: 'many' }),
  });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: string }).error, 'validation_failed');
});
