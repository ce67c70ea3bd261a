/**
 * Tokens for APIs and signing keys, against relying parties and APIs written by other authors:
 * openid-client (Node) and Authlib (Debian's python3-authlib, test/harness/authlib_rp.py). The
 * code flow runs in Chromium; ID tokens (ES256 and RS256) are verified against the JWKS; a JWT
 * access token for a registered API (RFC 9068, via an RFC 8707 resource indicator) is checked
 * offline by the API itself (jose, and Authlib's jose); an opaque API token is introspected by
 * its API; client_credentials gets only what an administrator granted; and during a key rotation
 * (the CLI's `keys rotate`) tokens signed by the old and the new key both validate.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import type { Browser } from 'playwright-core';
import { ADMIN_CLIENT_ID } from '../apps/cloud/src/admin/index.ts';
import { type RunningCloud, startCloud } from '../apps/cloud/src/server.ts';
import { createApi, grantApi } from '../apps/cloud/src/store/apis.ts';
import { type CreateClientInput, createClient } from '../apps/cloud/src/store/clients.ts';
import { createTenant } from '../apps/cloud/src/store/tenants.ts';
import { launchBrowser, newContext, serverSpki } from './harness/browser.ts';
import { ROOT, waitFor } from './harness/children.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';

const PW = `Pw-${Math.random().toString(36).slice(2)}-1!`;
const UPN = 'admin@apis.example';
/** Short, so the rotation happens within the test: JWKS max-age and node reload are D/4 = 2 s. */
const PUBLISH_DELAY_S = 8;
const ORDERS = 'https://orders.apis.example/';
const REPORTS = 'https://reports.apis.example/';
const LEDGER = 'https://ledger.apis.example/';
/** Never reached: Chromium's request to it is answered by the test (page.route). */
const REDIRECT = 'http://127.0.0.1:9/cb';

const dir = mkdtempSync(join(tmpdir(), 'gh-apis-'));
const caFile = join(dir, 'ca.pem');
let cloud: RunningCloud;
let browser: Browser;
let f: typeof fetch;
let tenantId: string;
let issuer: string;
type Client = { clientId: string; clientSecret: string };
let web: Client;
let webRs: Client;
let daemon: Client;
let reportsApi: Client;

const confidential = async (name: string, input: Partial<CreateClientInput> = {}): Promise<Client> => {
  const c = await createClient(cloud.ctx.db, tenantId, { name, redirectUris: [REDIRECT], ...input });
  return { clientId: c.clientId, clientSecret: c.clientSecret! };
};
const SERVICE: Partial<CreateClientInput> = { grantTypes: ['client_credentials'], redirectUris: [] };

/**
 * `command --flag value ...` as `command --flag=value ...`: a random state, verifier or secret can
 * start with '-', which argparse would otherwise read as the next option.
 */
const flagPairs = ([command, ...rest]: string[]): string[] => {
  const out = [command!];
  for (let i = 0; i < rest.length; i += 2) out.push(`${rest[i]}=${rest[i + 1]}`);
  return out;
};

// biome-ignore lint/suspicious/noExplicitAny: the Python side's JSON is checked field by field.
const authlib = (args: string[]): Promise<Record<string, any>> =>
  new Promise((done, fail) => {
    execFile(
      // Debian's interpreter, which has Debian's python3-authlib (scripts/ensure-system.ts).
      '/usr/bin/python3',
      [join(ROOT, 'test/harness/authlib_rp.py'), ...flagPairs(args), `--issuer=${issuer}`, `--ca=${caFile}`],
      { timeout: 30_000 },
      (err, stdout, stderr) => {
        try {
          const out = JSON.parse(stdout);
          done(err ? { ...out, exitCode: err.code } : out);
        } catch {
          fail(new Error(`authlib_rp ${args[0]}: ${stderr || stdout || err}`));
        }
      },
    );
  });

const cli = (args: string[]): Promise<unknown> =>
  new Promise((done, fail) => {
    execFile(
      process.execPath,
      ['apps/cloud/src/cli.ts', ...args, '--json'],
      {
        cwd: ROOT,
        timeout: 60_000,
        env: {
          ...process.env,
          GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'cloud'),
          GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
          GATEHOUSE_CLOUD_SIGNING_KEY_PUBLISH_DELAY_S: String(PUBLISH_DELAY_S),
        },
      },
      (err, stdout, stderr) =>
        err ? fail(new Error(`${args.join(' ')}: ${stderr}`)) : done(JSON.parse(stdout)),
    );
  });

const jwks = async () => {
  const r = await f(`${issuer}/jwks`);
  assert.equal(r.status, 200);
  return (await r.json()) as { keys: { kid: string; alg: string; d?: string }[] };
};

/** What an API does: its own offline check against the issuer's JWKS (RFC 9068 section 4). */
const apiVerifies = async (token: string, audience: string) =>
  (
    await jwtVerify(token, createLocalJWKSet(await jwks()), {
      issuer,
      audience,
      typ: 'at+jwt',
      algorithms: ['ES256', 'RS256'],
    })
  ).payload;

const rpConfig = async (c: Client, algorithm: 'oidc' | 'oauth2' = 'oidc') =>
  oidc.discovery(new URL(issuer), c.clientId, c.clientSecret, undefined, {
    [oidc.customFetch]: f as oidc.CustomFetch,
    algorithm,
  });

/** Signs in through the real pages in Chromium and hands back the URL the browser was sent to. */
const browserSignIn = async (authorizeUrl: string): Promise<URL> => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  let callback: string | undefined;
  await page.route(`${REDIRECT}**`, (route) => {
    callback = route.request().url();
    return route.fulfill({ status: 200, contentType: 'text/html', body: '<h1>Application</h1>' });
  });
  await page.goto(authorizeUrl);
  await page.getByLabel(/email or user name/i).fill(UPN);
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('Password').fill(PW);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const url = await waitFor('the redirect back to the application', () => callback, 20_000, 100);
  await ctx.close();
  return new URL(url);
};

before(async () => {
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      port: 0,
      gatewayPort: 0,
      publicUrl: 'https://localhost:0',
      logLevel: 'warn',
      signingKeyPublishDelayS: PUBLISH_DELAY_S,
    },
    { env: {} },
  );
  writeFileSync(caFile, cloud.caCert);
  f = pinnedFetch(cloud.caCert);
  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'APIs',
    domain: 'apis.example',
    admin: { upn: UPN, password: PW },
  }));
  issuer = `${cloud.url}/${tenantId}/v2.0`;
  web = await confidential('Web app');
  // The operator's way to register an RS256 relying party (the API's idTokenAlg: admin-apps.test.ts).
  webRs = (await cli([
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Web app (RS256)',
    '--redirect-uri',
    REDIRECT,
    '--id-token-alg',
    'RS256',
  ])) as Client;
  daemon = await confidential('Nightly job', SERVICE);
  reportsApi = await confidential('Reports API (introspects)', SERVICE);
  const now = Date.now();
  await createApi(
    cloud.ctx.db,
    tenantId,
    { name: 'Orders', identifier: ORDERS, scopes: ['orders.read', 'orders.write'] },
    now,
  );
  await createApi(
    cloud.ctx.db,
    tenantId,
    {
      name: 'Reports',
      identifier: REPORTS,
      scopes: ['reports.read'],
      tokenFormat: 'opaque',
      introspectionClientId: reportsApi.clientId,
    },
    now,
  );
  await createApi(
    cloud.ctx.db,
    tenantId,
    { name: 'Ledger', identifier: LEDGER, scopes: ['ledger.read'], signingAlg: 'RS256' },
    now,
  );
  for (const c of [web, webRs])
    await grantApi(cloud.ctx.db, tenantId, ORDERS, { clientId: c.clientId, scopes: ['orders.read'] }, now);
  await grantApi(cloud.ctx.db, tenantId, ORDERS, { clientId: daemon.clientId, scopes: ['orders.read'] }, now);
  await grantApi(
    cloud.ctx.db,
    tenantId,
    REPORTS,
    { clientId: daemon.clientId, scopes: ['reports.read'] },
    now,
  );
  await grantApi(cloud.ctx.db, tenantId, LEDGER, { clientId: daemon.clientId, scopes: ['ledger.read'] }, now);
  browser = await launchBrowser({ pinnedSpki: [await serverSpki(cloud.url, cloud.caCert)] });
});

after(async () => {
  await browser?.close();
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('discovery: both ID token algorithms, RFC 8414 at both locations, JWKS and metadata cacheable', async () => {
  const oidcMeta = await (await f(`${issuer}/.well-known/openid-configuration`)).json();
  assert.deepEqual([...oidcMeta.id_token_signing_alg_values_supported].sort(), ['ES256', 'RS256']);
  assert.ok(oidcMeta.grant_types_supported.includes('client_credentials'));
  assert.ok(oidcMeta.introspection_endpoint);
  const suffix = await f(`${issuer}/.well-known/oauth-authorization-server`);
  const inserted = await f(`${cloud.url}/.well-known/oauth-authorization-server/${tenantId}/v2.0`);
  assert.equal(inserted.status, 200);
  const a = await suffix.json();
  const b = await inserted.json();
  assert.equal(b.issuer, issuer);
  assert.deepEqual(b, a);
  // openid-client's RFC 8414 discovery fetches the path-inserted location from the issuer URL.
  const config = await rpConfig(web, 'oauth2');
  assert.equal(config.serverMetadata().issuer, issuer);
  for (const r of [inserted, suffix, await f(`${issuer}/jwks`)])
    assert.match(r.headers.get('cache-control') ?? '', /^public, max-age=2$/);
  // The JWKS publishes public keys only: one per algorithm before any rotation.
  const keys = (await jwks()).keys;
  assert.deepEqual(keys.map((k) => k.alg).sort(), ['ES256', 'RS256']);
  assert.ok(keys.every((k) => k.d === undefined));
  assert.equal((await f(`${cloud.url}/.well-known/oauth-authorization-server/nope/v2.0`)).status, 404);
});

test('code flow in Chromium, openid-client: ES256 ID token, JWT access token for the API checked offline', async () => {
  const config = await rpConfig(web);
  const verifier = oidc.randomPKCECodeVerifier();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid profile orders.read orders.write',
    resource: ORDERS,
    nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const back = await browserSignIn(url.href);
  const tokens = await oidc.authorizationCodeGrant(config, back, {
    pkceCodeVerifier: verifier,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const idToken = tokens.id_token!;
  assert.equal(decodeProtectedHeader(idToken).alg, 'ES256');
  const id = await jwtVerify(idToken, createLocalJWKSet(await jwks()), { issuer, audience: web.clientId });
  assert.equal(id.payload.preferred_username, UPN);
  // Only what the administrator granted (orders.read), though orders.write was asked for too.
  const at = await apiVerifies(tokens.access_token, ORDERS);
  assert.equal(at.scope, 'orders.read');
  assert.equal(at.client_id, web.clientId);
  assert.equal(at.sub, id.payload.sub);
  assert.equal(decodeProtectedHeader(tokens.access_token).typ, 'at+jwt');
  // The same token is no use to another API.
  await assert.rejects(apiVerifies(tokens.access_token, REPORTS), /aud/);
});

test('code flow in Chromium, Authlib: RS256 ID token verified against the JWKS, the API token by Authlib', async () => {
  const common = ['--client-id', webRs.clientId, '--redirect-uri', REDIRECT, '--resource', ORDERS];
  const start = await authlib(['authorize', ...common, '--scope', 'openid profile orders.read']);
  const back = await browserSignIn(start.url);
  const out = await authlib([
    'callback',
    ...common,
    '--secret',
    webRs.clientSecret,
    '--url',
    back.href,
    '--state',
    start.state,
    '--verifier',
    start.verifier,
    '--nonce',
    start.nonce,
  ]);
  assert.equal(out.error, undefined, JSON.stringify(out));
  assert.equal(out.id_token.header.alg, 'RS256');
  assert.equal(out.id_token.claims.preferred_username, UPN);
  assert.equal(out.access_token.header.typ, 'at+jwt');
  assert.equal(out.access_token.claims.aud, ORDERS);
  assert.equal(out.access_token.claims.scope, 'orders.read');
});

test('client_credentials: a JWT for the API with the granted scopes only; nothing for an API not granted', async () => {
  const config = await rpConfig(daemon);
  const t = await oidc.clientCredentialsGrant(config, {
    resource: ORDERS,
    scope: 'orders.read orders.write',
  });
  const at = await apiVerifies(t.access_token, ORDERS);
  assert.equal(at.scope, 'orders.read');
  assert.equal(at.sub, daemon.clientId);
  assert.equal(at.client_id, daemon.clientId);
  // The web app was granted nothing on Ledger; an unregistered resource is refused alike.
  for (const [c, resource] of [
    [web, LEDGER],
    [daemon, 'https://unknown.apis.example/'],
  ] as const) {
    const other = await rpConfig(await confidentialOf(c));
    await assert.rejects(oidc.clientCredentialsGrant(other, { resource }), (e: { error?: string }) => {
      assert.ok(['invalid_target', 'unauthorized_client'].includes(String(e.error)), String(e.error));
      return true;
    });
  }
  // Authlib as the daemon, then as the API checking that token offline with Authlib's jose.
  const cc = await authlib([
    'cc',
    '--client-id',
    daemon.clientId,
    '--secret',
    daemon.clientSecret,
    '--resource',
    LEDGER,
    '--scope',
    'ledger.read',
  ]);
  assert.equal(cc.error, undefined, JSON.stringify(cc));
  const checked = await authlib(['verify', '--token', cc.access_token, '--aud', LEDGER]);
  assert.equal(checked.header.alg, 'RS256');
  assert.equal(checked.claims.scope, 'ledger.read');
});

/** The web app may use client_credentials only once it is allowed to (SERVICE); a fresh copy is. */
const confidentialOf = async (c: Client): Promise<Client> =>
  c === web ? confidential('Web app as a service', SERVICE) : c;

test('introspection: the API introspects its opaque tokens; another client learns nothing', async () => {
  const cc = await authlib([
    'cc',
    '--client-id',
    daemon.clientId,
    '--secret',
    daemon.clientSecret,
    '--resource',
    REPORTS,
    '--scope',
    'reports.read',
  ]);
  assert.equal(cc.error, undefined, JSON.stringify(cc));
  assert.throws(() => decodeProtectedHeader(cc.access_token), 'an opaque token, not a JWT');
  const asApi = await authlib([
    'introspect',
    '--client-id',
    reportsApi.clientId,
    '--secret',
    reportsApi.clientSecret,
    '--token',
    cc.access_token,
  ]);
  assert.equal(asApi.active, true, JSON.stringify(asApi));
  assert.equal(asApi.aud, REPORTS);
  assert.equal(asApi.scope, 'reports.read');
  assert.equal(asApi.client_id, daemon.clientId);
  // openid-client as another confidential client of the tenant: inactive, and nothing else said.
  const other = await oidc.tokenIntrospection(await rpConfig(web), cc.access_token);
  assert.deepEqual(other, { active: false });
  // A wrong secret is not an introspection answer at all.
  const bad = await authlib([
    'introspect',
    '--client-id',
    reportsApi.clientId,
    '--secret',
    'wrong',
    '--token',
    cc.access_token,
  ]);
  assert.match(String(bad.message), /401|invalid_client/);
});

test('key rotation: published before it signs; old and new tokens both validate (jose and Authlib)', async () => {
  const config = await rpConfig(daemon);
  const token = async (resource: string) =>
    (await oidc.clientCredentialsGrant(config, { resource })).access_token;
  const oldEs = await token(ORDERS);
  const oldRs = await token(LEDGER);
  const before = (await jwks()).keys.map((k) => k.kid);

  const rotated = (await cli(['keys', 'rotate', '--tenant', tenantId])) as { kid: string; state: string }[];
  const next = rotated.filter((k) => k.state === 'next').map((k) => k.kid);
  assert.equal(next.length, 2, JSON.stringify(rotated));
  // A second rotation before this one has taken effect is refused.
  await assert.rejects(cli(['keys', 'rotate', '--tenant', tenantId]), /conflict/);

  const published = await waitFor(
    'the new keys in the JWKS',
    async () => ((await jwks()).keys.some((k) => next.includes(k.kid)) ? Date.now() : undefined),
    PUBLISH_DELAY_S * 1000,
    200,
  );
  // Published, not signing yet: a token now is still signed by the old key.
  assert.ok(before.includes(String(decodeProtectedHeader(await token(ORDERS)).kid)));
  const newEs = await waitFor(
    'a token signed by the new ES256 key',
    async () => {
      const t = await token(ORDERS);
      return next.includes(String(decodeProtectedHeader(t).kid)) ? t : undefined;
    },
    (PUBLISH_DELAY_S + 20) * 1000,
    250,
  );
  const signing = Date.now();
  // Everyone caching the JWKS for max-age (2 s) has seen the new key well before it signed.
  assert.ok(signing - published >= 4000, `published ${signing - published} ms before it signed`);
  const newRs = await token(LEDGER);
  assert.ok(next.includes(String(decodeProtectedHeader(newRs).kid)));

  const kids = (await jwks()).keys.map((k) => k.kid);
  for (const k of [...before, ...next]) assert.ok(kids.includes(k), `${k} is published`);
  for (const [t, aud] of [
    [oldEs, ORDERS],
    [newEs, ORDERS],
    [oldRs, LEDGER],
    [newRs, LEDGER],
  ] as const) {
    const p: JWTPayload = await apiVerifies(t, aud);
    assert.equal(p.aud, aud);
    const py = await authlib(['verify', '--token', t, '--aud', aud]);
    assert.equal(py.error, undefined, JSON.stringify(py));
  }
  const listed = (await cli(['keys', 'list', '--tenant', tenantId])) as { kid: string; state: string }[];
  assert.deepEqual(
    listed
      .filter((k) => k.state === 'retiring')
      .map((k) => k.kid)
      .sort(),
    [...before].sort(),
  );
});

test('the admin API registers, lists, grants and deletes APIs and lists the keys', async () => {
  const t = (await cloud.oidc.forTenant(tenantId))!;
  const user = await cloud.ctx.db
    .selectFrom('users')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  const client = (await t.provider.Client.find(ADMIN_CLIENT_ID))!;
  const grant = new t.provider.Grant({ accountId: user.id, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid profile');
  const grantId = await grant.save();
  const bearer = await new t.provider.AccessToken({
    accountId: user.id,
    client,
    grantId,
    gty: 'authorization_code',
    scope: 'openid profile',
  }).save();
  const api = (method: string, path: string, body?: unknown) =>
    f(`${cloud.url}/${tenantId}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  const made = await api('POST', '/apis', {
    name: 'Payroll',
    identifier: 'api://payroll',
    scopes: ['pay.read'],
  });
  assert.equal(made.status, 200, await made.clone().text());
  const payroll = await made.json();
  assert.equal((await api('POST', '/apis', { name: 'Again', identifier: 'api://payroll' })).status, 409);
  const bad = await api('POST', '/apis', { name: 'Bad', identifier: 'api://x', scopes: ['openid'] });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error, 'validation_failed');
  const granted = await api('POST', `/apis/${payroll.id}/grants`, {
    clientId: daemon.clientId,
    scopes: ['pay.read'],
  });
  assert.deepEqual((await granted.json()).grants, [{ clientId: daemon.clientId, scopes: ['pay.read'] }]);
  const list = (await (await api('GET', '/apis')).json()) as { identifier: string }[];
  assert.ok(list.some((a) => a.identifier === 'api://payroll'));
  const keys = (await (await api('GET', '/keys')).json()) as { state: string }[];
  assert.ok(keys.some((k) => k.state === 'signing'));
  assert.equal((await api('DELETE', `/apis/${payroll.id}`)).status, 200);
  assert.equal((await api('GET', `/apis/${payroll.id}`)).status, 404);
  const audit = await cloud.ctx.db
    .selectFrom('audit')
    .select(['action', 'actor'])
    .where('tenant_id', '=', tenantId)
    .where('action', 'like', 'api.%')
    .execute();
  assert.deepEqual(audit.map((r) => `${r.action} ${r.actor}`).sort(), [
    `api.create ${UPN}`,
    `api.delete ${UPN}`,
    `api.grant ${UPN}`,
  ]);
});
