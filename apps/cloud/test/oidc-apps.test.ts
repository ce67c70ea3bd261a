/**
 * Apps registered through the admin API's directory functions, signed in to with openid-client
 * through the sign-in pages (driven over HTTP, cookies kept here): the code flow with
 * offline_access gets a refresh token without prompt=consent when the app is allowed refresh
 * tokens, and none when it is not; a third-party app shows a consent page (cancel is access_denied,
 * allow is remembered); RP-initiated logout with a registered post_logout_redirect_uri redirects
 * there with the state, and an unregistered one is refused on our branded page.
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
import { createTenant } from '../src/store/tenants.ts';

const PW = 'Admin-Passw0rd!';
const APP = 'https://app.example.test';
let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
let issuer: string;
type App = { clientId: string; clientSecret: string };
const apps = {} as Record<'offline' | 'noRefresh' | 'thirdParty', App>;

const configOf = (c: App) =>
  oc.discovery(new URL(issuer), c.clientId, undefined, oc.ClientSecretBasic(c.clientSecret), {
    [oc.customFetch]: f as oc.CustomFetch,
  });

/** A cookie jar over the pinned fetch: enough of a browser for the sign-in pages. */
const browser = () => {
  const jar = new Map<string, { value: string; path: string }>();
  const request = async (url: string, form?: Record<string, string>) => {
    const u = new URL(url, cloud.url);
    const cookie = [...jar.entries()]
      .filter(([, c]) => u.pathname.startsWith(c.path))
      .map(([k, c]) => `${k.split('\0')[0]}=${c.value}`)
      .join('; ');
    const res = await f(u.href, {
      method: form ? 'POST' : 'GET',
      headers: {
        accept: 'text/html',
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const path = attrs.find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      jar.set(`${pair.slice(0, eq)}\0${path}`, { value: pair.slice(eq + 1), path });
    }
    return { status: res.status, text: await res.text(), location: res.headers.get('location') ?? '' };
  };
  /** Follows redirects until one leaves the cloud (the app's URI) or a page answers. */
  const follow = async (first: { status: number; text: string; location: string }) => {
    let r = first;
    for (let i = 0; i < 8 && [302, 303].includes(r.status) && !r.location.startsWith(APP); i++)
      r = await request(r.location);
    return r;
  };
  return { request, follow };
};

const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
const formOf = (html: string) => /<form method="post" action="([^"]+)"/.exec(html)?.[1] ?? '';

/** Starts a code flow and signs in as the admin; returns where the browser ended up. */
const signIn = async (b: ReturnType<typeof browser>, config: oc.Configuration, scope: string) => {
  const verifier = oc.randomPKCECodeVerifier();
  const state = oc.randomState();
  const url = oc.buildAuthorizationUrl(config, {
    redirect_uri: `${APP}/cb`,
    scope,
    code_challenge: await oc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  });
  const page = await b.follow(await b.request(url.href));
  let r = page;
  if (page.text.includes('name="username"') && page.status === 200) {
    const step1 = await b.request(formOf(page.text), {
      csrf: csrfOf(page.text),
      username: 'admin@apps.example',
    });
    r = await b.follow(
      await b.request(formOf(step1.text), {
        csrf: csrfOf(step1.text),
        username: 'admin@apps.example',
        password: PW,
      }),
    );
  }
  return { r, verifier, state };
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-oidc-apps-'));
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://127.0.0.1:0', logLevel: 'silent' },
    { env: {} },
  );
  f = pinnedFetch(cloud.caCert);
  const t = await createTenant(cloud.ctx, {
    name: 'Apps',
    domain: 'apps.example',
    admin: { upn: 'admin@apps.example', password: PW },
  });
  issuer = `${cloud.url}/${t.tenantId}/v2.0`;
  const base = { redirectUris: [`${APP}/cb`], postLogoutRedirectUris: [`${APP}/bye`] };
  apps.offline = (await createClient(cloud.ctx.db, t.tenantId, { name: 'Offline', ...base })) as App;
  apps.noRefresh = (await createClient(cloud.ctx.db, t.tenantId, {
    name: 'No refresh',
    ...base,
    grantTypes: ['authorization_code'],
  })) as App;
  apps.thirdParty = (await createClient(cloud.ctx.db, t.tenantId, {
    name: 'Elsewhere Inc',
    ...base,
    firstParty: false,
  })) as App;
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('offline_access on an app allowed refresh tokens gives one without prompt=consent', async () => {
  const config = await configOf(apps.offline);
  const b = browser();
  const { r, verifier, state } = await signIn(b, config, 'openid offline_access');
  assert.ok(r.location.startsWith(`${APP}/cb`), `${r.status} ${r.location} ${r.text.slice(0, 200)}`);
  const tokens = await oc.authorizationCodeGrant(config, new URL(r.location), {
    pkceCodeVerifier: verifier,
    expectedState: state,
  });
  assert.ok(tokens.refresh_token, 'a refresh token without prompt=consent');
  assert.ok((await oc.refreshTokenGrant(config, tokens.refresh_token)).access_token);

  // Signed in already: the next authorization asks nothing and still gets one.
  const again = await signIn(b, config, 'openid offline_access');
  const more = await oc.authorizationCodeGrant(config, new URL(again.r.location), {
    pkceCodeVerifier: again.verifier,
    expectedState: again.state,
  });
  assert.ok(more.refresh_token);
  // Without offline_access, no refresh token: it is what the app asks for, not a default.
  const plain = await signIn(b, config, 'openid');
  const none = await oc.authorizationCodeGrant(config, new URL(plain.r.location), {
    pkceCodeVerifier: plain.verifier,
    expectedState: plain.state,
  });
  assert.equal(none.refresh_token, undefined);
});

test('an app not allowed refresh tokens gets none, even asking for offline_access', async () => {
  const config = await configOf(apps.noRefresh);
  const { r, verifier, state } = await signIn(browser(), config, 'openid offline_access');
  const tokens = await oc.authorizationCodeGrant(config, new URL(r.location), {
    pkceCodeVerifier: verifier,
    expectedState: state,
  });
  assert.ok(tokens.access_token);
  assert.equal(tokens.refresh_token, undefined);
});

test('a third-party app asks for consent: cancel is access_denied, allow is remembered', async () => {
  const config = await configOf(apps.thirdParty);
  const b = browser();
  const first = await signIn(b, config, 'openid profile offline_access');
  assert.equal(first.r.status, 200, first.r.location);
  assert.match(first.r.text, /<h1>Allow access<\/h1>/);
  assert.match(first.r.text, /Elsewhere Inc/);
  assert.match(first.r.text, /See your name and user name/);
  assert.match(first.r.text, /Keep access/);
  const denied = await b.follow(
    await b.request(formOf(first.r.text), { csrf: csrfOf(first.r.text), decision: 'deny' }),
  );
  assert.equal(new URL(denied.location).searchParams.get('error'), 'access_denied');

  const second = await signIn(b, config, 'openid profile offline_access');
  assert.match(second.r.text, /Allow access/, 'asked again after a cancel');
  const forged = await b.request(formOf(second.r.text), { csrf: 'x', decision: 'allow' });
  assert.equal(forged.status, 403, 'a consent without the form token is refused');
  const allowed = await b.follow(
    await b.request(formOf(second.r.text), { csrf: csrfOf(second.r.text), decision: 'allow' }),
  );
  const tokens = await oc.authorizationCodeGrant(config, new URL(allowed.location), {
    pkceCodeVerifier: second.verifier,
    expectedState: second.state,
  });
  assert.ok(tokens.refresh_token);
  const third = await signIn(b, config, 'openid profile');
  assert.ok(third.r.location.startsWith(`${APP}/cb`), 'consent is remembered for what was allowed');
});

test('RP-initiated logout returns to a registered post_logout_redirect_uri, refuses another', async () => {
  const config = await configOf(apps.offline);
  const b = browser();
  const { r, verifier, state } = await signIn(b, config, 'openid');
  const tokens = await oc.authorizationCodeGrant(config, new URL(r.location), {
    pkceCodeVerifier: verifier,
    expectedState: state,
  });
  const end = oc.buildEndSessionUrl(config, {
    id_token_hint: String(tokens.id_token),
    post_logout_redirect_uri: `${APP}/bye`,
    state: 'bye-state',
  });
  const confirm = await b.request(end.href);
  assert.equal(confirm.status, 200);
  assert.match(confirm.text, /<h1>Sign out<\/h1>/, 'our page shell');
  assert.ok(
    !/fonts\.googleapis|https?:\/\/(?!127\.0\.0\.1)[^"']*\.(css|woff)/.test(confirm.text),
    'nothing from another host',
  );
  const action = /<form[^>]*action="([^"]+)"/.exec(confirm.text)?.[1] ?? '';
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.text)?.[1] ?? '';
  const out = await b.request(action.replace(/&amp;/g, '&'), { xsrf, logout: 'yes' });
  assert.equal(out.status, 303, out.text.slice(0, 300));
  const back = new URL(out.location);
  assert.equal(`${back.origin}${back.pathname}`, `${APP}/bye`);
  assert.equal(back.searchParams.get('state'), 'bye-state');

  const other = await b.request(
    oc.buildEndSessionUrl(config, { post_logout_redirect_uri: `${APP}/elsewhere` }).href,
  );
  assert.equal(other.status, 400);
  assert.match(other.text, /post_logout_redirect_uri not registered/);
  assert.match(other.text, /<html lang="en">/, 'the error is on our page too');
});
