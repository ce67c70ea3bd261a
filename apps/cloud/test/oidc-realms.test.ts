/**
 * Sign-in outcomes other than success and wrong password, through the real cloud: home realm
 * discovery sends a federated domain's users to their own identity provider, and an
 * infrastructure failure (a synced user, pass-through on, no agent connected) is retryable, never
 * a wrong password, both on the token endpoint and on the sign-in page.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as oc from 'openid-client';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { createClient } from '../src/store/clients.ts';
import { addDomain, setDomainKind, verifyDomain } from '../src/store/domains.ts';
import { createTenant, updateSettings } from '../src/store/tenants.ts';
import { upsertSyncedUsers } from '../src/store/users.ts';

const REDIRECT = 'https://app.example.test/callback';
const IDP = 'https://idp.fabrikam.example/sso';
let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
let issuer: string;
let client: { clientId: string; clientSecret: string };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-realms-'));
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://127.0.0.1:0', logLevel: 'warn' },
    { env: {} },
  );
  f = pinnedFetch(cloud.caCert);
  const { tenantId } = await createTenant(cloud.ctx, {
    name: 'Fabrikam',
    domain: 'corp.example',
    admin: { upn: 'admin@corp.example', password: 'Admin-password-1' },
  });
  issuer = `${cloud.url}/${tenantId}/v2.0`;
  const db = cloud.ctx.db;
  await addDomain(db, tenantId, 'fabrikam.example');
  await verifyDomain(db, tenantId, 'fabrikam.example', { force: true });
  await setDomainKind(db, tenantId, 'fabrikam.example', { kind: 'federated', federationUrl: IDP });
  await upsertSyncedUsers(db, tenantId, [
    { anchor: 'a-1', upn: 'alice@corp.example', dn: 'CN=Alice,DC=corp,DC=example', enabled: true },
  ]);
  // The cloud refuses to turn pass-through on with no agent; the test vouches for one, then has none.
  await updateSettings(db, tenantId, { ptaEnabled: true, legacyAuth: true }, { activeAgents: 1 });
  client = (await createClient(db, tenantId, {
    name: 'Portal',
    redirectUris: [REDIRECT],
    grantTypes: ['authorization_code', 'password'],
  })) as typeof client;
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const discover = () =>
  oc.discovery(new URL(issuer), client.clientId, undefined, oc.ClientSecretBasic(client.clientSecret), {
    [oc.customFetch]: f as oc.CustomFetch,
  });

test('password grant with no agent: 400 temporarily_unavailable (RFC 6749), no_agent, Retry-After', async () => {
  const config = await discover();
  const meta = config.serverMetadata();
  const res = await f(String(meta.token_endpoint), {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({
      grant_type: 'password',
      username: 'alice@corp.example',
      password: 'Whatever-1',
    }).toString(),
  });
  assert.equal(res.status, 400);
  assert.equal(res.headers.get('retry-after'), '5');
  const body = (await res.json()) as Record<string, string>;
  assert.equal(body.error, 'temporarily_unavailable');
  assert.equal(body.error_code, 'no_agent');
  assert.equal(body.error_description, 'Sign-in is temporarily unavailable.');
  assert.match(String(body.request_id), /^[0-9a-f-]{36}$/);
});

test('password grant with a missing password is invalid_request', async () => {
  const err = await oc
    .genericGrantRequest(await discover(), 'password', { username: 'alice@corp.example' })
    .then(
      () => assert.fail('expected a failure'),
      (e: oc.ResponseBodyError) => e,
    );
  assert.equal(err.error, 'invalid_request');
  assert.equal((err.cause as { error_code?: string }).error_code, 'validation_failed');
});

/** Starts an authorization and returns the first sign-in page with its cookies. */
const startSignIn = async () => {
  const config = await discover();
  const url = oc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  const start = await f(url.href);
  const cookie = start.headers
    .getSetCookie()
    .map((c) => c.split(';')[0])
    .join('; ');
  const page = String(start.headers.get('location'));
  const html = await (await f(new URL(page, cloud.url).href, { headers: { cookie } })).text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
  const post = (step: string, form: Record<string, string>) =>
    f(new URL(`${page}/${step}`, cloud.url).href, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...form, csrf }).toString(),
    });
  return { post };
};

test('home realm discovery sends a federated domain to its identity provider', async () => {
  const { post } = await startSignIn();
  const res = await post('username', { username: 'bob@fabrikam.example' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), IDP);
});

test('the sign-in page shows an infrastructure failure as retryable, with its code', async () => {
  const { post } = await startSignIn();
  const step2 = await post('username', { username: 'alice@corp.example' });
  assert.equal(step2.status, 200);
  const res = await post('password', { username: 'alice@corp.example', password: 'Whatever-1' });
  assert.equal(res.status, 503);
  const html = await res.text();
  assert.match(html, /role="alert"[^>]*><p>Sign-in is temporarily unavailable\.<\/p>/);
  assert.match(html, /Error code: no_agent/);
  assert.doesNotMatch(html, /incorrect/);
});
