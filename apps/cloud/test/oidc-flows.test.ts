/**
 * A real cloud on a random port over HTTPS, openid-client as the relying party: discovery, the
 * tenant's ES256 keys, the password grant (success, wrong password, legacy authentication off),
 * refresh token rotation, and the authorization code flow with PKCE through the sign-in pages,
 * driven by hand over HTTP (cookies and redirects followed here). A canary password is planted
 * and looked for in every log line and in the database file afterwards.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import * as oc from 'openid-client';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { createClient } from '../src/store/clients.ts';
import { createTenant, updateSettings } from '../src/store/tenants.ts';

const CANARY = `Canary-${randomBytes(9).toString('base64url')}`;
const REDIRECT = 'https://app.example.test/callback';
let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
let tenantId: string;
let adminId: string;
let issuer: string;
let legacy: { clientId: string; clientSecret: string };
let web: { clientId: string; clientSecret: string };
const logs: string[] = [];

const discover = (c: { clientId: string; clientSecret: string }) =>
  oc.discovery(new URL(issuer), c.clientId, undefined, oc.ClientSecretBasic(c.clientSecret), {
    [oc.customFetch]: f as oc.CustomFetch,
  });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-oidc-'));
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://127.0.0.1:0', logLevel: 'debug' },
    { env: {}, logDestination: sink },
  );
  f = pinnedFetch(cloud.caCert);
  const t = await createTenant(cloud.ctx, {
    name: 'Contoso',
    domain: 'contoso.example',
    admin: { upn: 'admin@contoso.example', password: CANARY, displayName: 'Break Glass' },
  });
  tenantId = t.tenantId;
  adminId = t.adminUserId;
  issuer = `${cloud.url}/${tenantId}/v2.0`;
  legacy = (await createClient(cloud.ctx.db, tenantId, {
    name: 'Legacy mail',
    grantTypes: ['password', 'refresh_token'],
  })) as typeof legacy;
  web = (await createClient(cloud.ctx.db, tenantId, {
    name: 'Web app',
    redirectUris: [REDIRECT],
    grantTypes: ['authorization_code', 'refresh_token'],
  })) as typeof web;
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('discovery names the tenant issuer and an ES256 and an RS256 key', async () => {
  assert.match(cloud.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(!cloud.url.endsWith(':0'));
  const config = await discover(legacy);
  const meta = config.serverMetadata();
  assert.equal(meta.issuer, issuer);
  assert.equal(meta.token_endpoint, `${issuer}/token`);
  // RS256 because OpenID Connect Discovery requires it; ES256 stays every client's default.
  assert.deepEqual(meta.id_token_signing_alg_values_supported, ['ES256', 'RS256']);
  assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
  assert.ok(meta.grant_types_supported?.includes('password'));
  const jwks = (await (await f(String(meta.jwks_uri))).json()) as JSONWebKeySet;
  assert.deepEqual(jwks.keys.map((k) => `${k.alg} ${k.kty} ${k.crv ?? ''}`).sort(), [
    'ES256 EC P-256',
    'RS256 RSA ',
  ]);
  for (const k of jwks.keys) {
    const priv = k as { d?: string; p?: string };
    assert.equal(priv.d ?? priv.p, undefined, 'private part never published');
  }
});

test('an unknown tenant is a 404 in the catalog format', async () => {
  const res = await f(`${cloud.url}/no-such-tenant/v2.0/.well-known/openid-configuration`);
  assert.equal(res.status, 404);
  assert.equal(((await res.json()) as { error: string }).error, 'not_found');
});

const passwordGrant = async (password: string, scope = 'openid profile email offline_access') =>
  oc.genericGrantRequest(await discover(legacy), 'password', {
    username: 'admin@contoso.example',
    password,
    scope,
  });

const errorOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err as oc.ResponseBodyError;
  }
  assert.fail('expected the request to fail');
};

test('password grant: refused while the tenant blocks legacy authentication', async () => {
  const err = await errorOf(passwordGrant(CANARY));
  assert.equal(err.error, 'unauthorized_client');
  assert.equal(err.status, 400);
  assert.equal((err.cause as { error_code?: string }).error_code, 'legacy_auth_blocked');
});

test('password grant: tokens for the cloud-only admin, ES256 ID token with the claims', async () => {
  await updateSettings(cloud.ctx.db, tenantId, { legacyAuth: true }, { activeAgents: 0 });
  cloud.authenticator.invalidate(tenantId);
  const tokens = await passwordGrant(CANARY);
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.ok(tokens.access_token);
  assert.ok(tokens.refresh_token);
  assert.ok(tokens.id_token);
  assert.equal(decodeProtectedHeader(tokens.id_token).alg, 'ES256');
  const jwks = (await (await f(`${issuer}/jwks`)).json()) as JSONWebKeySet;
  const { payload } = await jwtVerify(tokens.id_token, createLocalJWKSet(jwks), {
    issuer,
    audience: legacy.clientId,
    algorithms: ['ES256'],
  });
  assert.equal(payload.sub, adminId);
  assert.equal(payload.tid, tenantId);
  assert.equal(payload.upn, 'admin@contoso.example');
  assert.equal(payload.preferred_username, 'admin@contoso.example');
  assert.equal(payload.name, 'Break Glass');
  assert.deepEqual(payload.roles, ['global_admin']);

  const info = await oc.fetchUserInfo(await discover(legacy), tokens.access_token, adminId);
  assert.equal(info.tid, tenantId);
  assert.equal(info.upn, 'admin@contoso.example');
});

test('password grant: a wrong password is invalid_grant with our code', async () => {
  const err = await errorOf(passwordGrant(`${CANARY}-wrong`));
  assert.equal(err.error, 'invalid_grant');
  assert.equal(err.status, 400);
  assert.equal(err.error_description, 'The user name or password is incorrect.');
  assert.equal((err.cause as { error_code?: string }).error_code, 'invalid_credentials');
});

test('password grant: a client without the grant is refused', async () => {
  const err = await errorOf(
    oc.genericGrantRequest(await discover(web), 'password', {
      username: 'admin@contoso.example',
      password: CANARY,
    }),
  );
  assert.equal(err.error, 'invalid_request');
});

test('refresh tokens rotate and a reused one is refused', async () => {
  const config = await discover(legacy);
  const first = await passwordGrant(CANARY);
  const second = await oc.refreshTokenGrant(config, String(first.refresh_token));
  assert.ok(second.access_token);
  assert.ok(second.refresh_token);
  assert.notEqual(second.refresh_token, first.refresh_token);
  assert.equal(second.claims()?.sub, adminId);
  const err = await errorOf(oc.refreshTokenGrant(config, String(first.refresh_token)));
  assert.equal(err.error, 'invalid_grant');
  // Reuse revokes the whole grant: the rotated token is dead too.
  const err2 = await errorOf(oc.refreshTokenGrant(config, String(second.refresh_token)));
  assert.equal(err2.error, 'invalid_grant');
});

/** A tiny browser: a cookie jar honouring paths, redirects followed by hand. */
const browser = () => {
  const jar = new Map<string, { value: string; path: string }>();
  const cookieHeader = (url: URL) =>
    [...jar.entries()]
      .filter(([, c]) => url.pathname.startsWith(c.path))
      .map(([k, c]) => `${k.split('\0')[0]}=${c.value}`)
      .join('; ');
  const request = async (url: string, init: { method?: string; form?: Record<string, string> } = {}) => {
    const u = new URL(url, cloud.url);
    const headers: Record<string, string> = { accept: 'text/html' };
    const cookie = cookieHeader(u);
    if (cookie) headers.cookie = cookie;
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const res = await f(u.href, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body });
    for (const line of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const path = attrs.find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      const expired = attrs.some((a) => /^expires=Thu, 01 Jan 1970/i.test(a));
      if (expired) jar.delete(`${name}\0${path}`);
      else jar.set(`${name}\0${path}`, { value: pair.slice(eq + 1), path });
      assert.ok(
        attrs.some((a) => /^samesite=/i.test(a)),
        `cookie ${name} has SameSite`,
      );
      assert.ok(
        attrs.some((a) => /^secure$/i.test(a)),
        `cookie ${name} is Secure`,
      );
    }
    return { res, text: await res.text(), location: res.headers.get('location') ?? undefined };
  };
  return { request };
};

const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';

test('authorization code + PKCE through the sign-in pages', async () => {
  const config = await discover(web);
  const verifier = oc.randomPKCECodeVerifier();
  const state = oc.randomState();
  const nonce = oc.randomNonce();
  const authUrl = oc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid profile email offline_access',
    code_challenge: await oc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    prompt: 'consent',
  });
  const b = browser();
  const start = await b.request(authUrl.href);
  assert.equal(start.res.status, 303);
  assert.match(String(start.location), new RegExp(`^/${tenantId}/v2\\.0/interaction/[\\w-]+$`));

  const step1 = await b.request(String(start.location));
  assert.equal(step1.res.status, 200);
  assert.match(step1.text, /<html lang="en">/);
  assert.match(step1.text, /<label for="username">/);
  assert.match(step1.text, /autocomplete="username"/);
  assert.match(step1.text, /role="alert"/);
  assert.match(step1.text, /Web app/);
  assert.match(String(step1.res.headers.get('content-security-policy')), /frame-ancestors 'none'/);

  // A forged POST without the interaction's CSRF token is refused.
  const forged = await b.request(`${start.location}/username`, {
    form: { username: 'admin@contoso.example', csrf: 'x' },
  });
  assert.equal(forged.res.status, 403);

  const step2 = await b.request(`${start.location}/username`, {
    form: { username: 'admin@contoso.example', csrf: csrfOf(step1.text) },
  });
  assert.equal(step2.res.status, 200);
  assert.match(step2.text, /autocomplete="current-password"/);
  assert.match(step2.text, /value="admin@contoso.example"/);

  const wrong = await b.request(`${start.location}/password`, {
    form: { username: 'admin@contoso.example', password: `${CANARY}-wrong`, csrf: csrfOf(step2.text) },
  });
  assert.equal(wrong.res.status, 400);
  assert.match(wrong.text, /role="alert"[^>]*><p>The user name or password is incorrect\.<\/p>/);
  assert.match(wrong.text, /Error code: invalid_credentials/);
  assert.ok(!wrong.text.includes(CANARY), 'the password is never echoed');

  const ok = await b.request(`${start.location}/password`, {
    form: { username: 'admin@contoso.example', password: CANARY, csrf: csrfOf(wrong.text) },
  });
  assert.equal(ok.res.status, 303);
  let location = String(ok.location);
  for (let i = 0; i < 5 && !location.startsWith(REDIRECT); i++) {
    const hop = await b.request(location);
    assert.ok(
      [302, 303].includes(hop.res.status),
      `redirect expected, got ${hop.res.status}: ${hop.text.slice(0, 300)}`,
    );
    location = String(hop.location);
  }
  assert.ok(location.startsWith(REDIRECT), location);

  const tokens = await oc.authorizationCodeGrant(config, new URL(location), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
  });
  const claims = tokens.claims();
  assert.equal(claims?.sub, adminId);
  assert.equal(claims?.tid, tenantId);
  assert.equal(claims?.preferred_username, 'admin@contoso.example');
  assert.deepEqual(claims?.roles, ['global_admin']);
  assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');
  const refreshed = await oc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token);

  // A second authorization in the same browser reuses the session: straight back to the app.
  const again = await b.request(
    oc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await oc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    }).href,
  );
  assert.equal(again.res.status, 303);
  assert.ok(String(again.location).startsWith(REDIRECT), String(again.location));
});

test('the authorization endpoint requires PKCE', async () => {
  const config = await discover(web);
  const b = browser();
  const res = await b.request(
    oc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid', state: 's' }).href,
  );
  assert.equal(res.res.status, 303);
  const back = new URL(String(res.location));
  assert.equal(back.origin + back.pathname, REDIRECT);
  assert.equal(back.searchParams.get('error'), 'invalid_request');
  assert.match(String(back.searchParams.get('error_description')), /PKCE/);
});

test('the canary password is in no log line and nowhere in the database', async () => {
  await cloud.authenticator.flush();
  assert.ok(logs.length > 10, 'logs were captured');
  for (const line of logs)
    assert.ok(!line.includes(CANARY), `password leaked into a log line: ${line.slice(0, 200)}`);
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    if (!/\.db(-wal|-shm)?$/.test(name)) continue;
    assert.ok(!readFileSync(join(dir, name)).includes(CANARY), `password found in ${name}`);
  }
});
