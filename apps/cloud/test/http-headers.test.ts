/**
 * The public port's response headers, on a real cloud: HSTS on every answer (JSON, errors,
 * redirects, the pages, the OIDC endpoints, the admin center), and on every HTML page a CSP whose
 * form-action allows exactly where that page's form may lead. Whether a browser then lets the
 * flows through is test/e2e-page-headers.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as oc from 'openid-client';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { HSTS_LOCALHOST_MAX_AGE_S, HSTS_MAX_AGE_S, hstsMaxAge } from '../src/http/security-headers.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { createClient } from '../src/store/clients.ts';
import { addDomain, setDomainKind, verifyDomain } from '../src/store/domains.ts';
import { createTenant } from '../src/store/tenants.ts';
import { formTarget, pageCsp } from '../src/web/page.ts';

const REDIRECT = 'https://app.example.test/callback';
const IDP = 'https://idp.fabrikam.example/sso';
const PW = `Pw-${Math.random().toString(36).slice(2)}-1!`;
let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
let tenantId: string;
let client: { clientId: string; clientSecret: string };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-headers-'));
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://127.0.0.1:0', logLevel: 'warn' },
    { env: {} },
  );
  f = pinnedFetch(cloud.caCert);
  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'Headers',
    domain: 'headers.example',
    admin: { upn: 'admin@headers.example', password: PW },
  }));
  await addDomain(cloud.ctx.db, tenantId, 'fabrikam.example');
  await verifyDomain(cloud.ctx.db, tenantId, 'fabrikam.example', { force: true });
  await setDomainKind(cloud.ctx.db, tenantId, 'fabrikam.example', { kind: 'federated', federationUrl: IDP });
  client = (await createClient(cloud.ctx.db, tenantId, {
    name: 'Portal',
    redirectUris: [REDIRECT],
    grantTypes: ['authorization_code'],
  })) as typeof client;
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const HSTS = `max-age=${HSTS_MAX_AGE_S}; includeSubDomains`;

/** A GET that keeps cookies between calls, like a browser, and does not follow redirects. */
const session = () => {
  const jar = new Map<string, string>();
  return async (path: string, init: { form?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { accept: 'text/html' };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const res = await f(new URL(path, cloud.url).href, {
      method: body ? 'POST' : 'GET',
      headers,
      body,
      redirect: 'manual',
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair = ''] = c.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return { res, text: await res.text() };
  };
};

const startSignIn = async (extra: Record<string, string> = {}) => {
  const get = session();
  const config = await oc.discovery(
    new URL(`${cloud.url}/${tenantId}/v2.0`),
    client.clientId,
    client.clientSecret,
    undefined,
    {
      [oc.customFetch]: f as oc.CustomFetch,
    },
  );
  const url = oc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    code_challenge: await oc.calculatePKCECodeChallenge(oc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    ...extra,
  });
  const start = await get(url.pathname + url.search);
  assert.equal(start.res.status, 303);
  const interaction = String(start.res.headers.get('location'));
  return { get, start, interaction };
};

const csp = (res: Response) => String(res.headers.get('content-security-policy'));
const formAction = (res: Response) => /form-action ([^;]*)/.exec(csp(res))?.[1]?.trim().split(/\s+/) ?? [];
const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';

test('HSTS is on every answer of the public port: JSON, errors, redirects, pages, OIDC, admin center', async () => {
  const { get, start, interaction } = await startSignIn();
  const answers = [
    ['health', (await get('/healthz')).res],
    ['metrics', (await get('/metrics')).res],
    ['unknown route', (await get('/no/such/thing')).res],
    ['discovery', (await get(`/${tenantId}/v2.0/.well-known/openid-configuration`)).res],
    ['jwks', (await get(`/${tenantId}/v2.0/jwks`)).res],
    ['authorize redirect', start.res],
    ['sign-in page', (await get(interaction)).res],
    ['oidc error page', (await get(`/${tenantId}/v2.0/auth?client_id=nope`)).res],
    ['admin center', (await get(`/${tenantId}/admin/`)).res],
    ['admin API error', (await get(`/${tenantId}/api/v1/users`)).res],
    ['agent approval page', (await get(`/${tenantId}/agents/device`)).res],
    ['device authorization error', await f(`${cloud.url}/agent/v1/device/authorize`, { method: 'POST' })],
  ] as const;
  for (const [what, res] of answers) {
    assert.equal(res.headers.get('strict-transport-security'), HSTS, `${what} (${res.status})`);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', what);
    // Set once by http/security-headers.ts, not by each page.
    assert.equal(res.headers.get('x-frame-options'), 'DENY', what);
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer', what);
    assert.match(csp(res), /frame-ancestors 'none'/, what);
  }
});

test('a cloud on localhost pins HSTS for minutes, not a year, so other local servers are not forced to HTTPS', () => {
  assert.equal(hstsMaxAge('https://localhost:8443'), HSTS_LOCALHOST_MAX_AGE_S);
  assert.equal(hstsMaxAge('https://dev.localhost'), HSTS_LOCALHOST_MAX_AGE_S);
  assert.equal(hstsMaxAge('https://login.example.com'), HSTS_MAX_AGE_S);
  assert.equal(hstsMaxAge('https://127.0.0.1:8443'), HSTS_MAX_AGE_S);
});

test('the sign-in pages allow their forms to lead only to the client, and the username page to federated IdPs', async () => {
  const { get, interaction } = await startSignIn();
  const username = await get(interaction);
  assert.equal(username.res.status, 200);
  assert.deepEqual(
    formAction(username.res).sort(),
    ["'self'", 'https://app.example.test', 'https://idp.fabrikam.example'].sort(),
  );
  assert.match(csp(username.res), /default-src 'none'/);
  assert.doesNotMatch(csp(username.res), /script-src/, 'the sign-in pages run no script');
  const password = await get(`${interaction}/username`, {
    form: { username: 'admin@headers.example', csrf: csrfOf(username.text) },
  });
  assert.equal(password.res.status, 200);
  assert.deepEqual(formAction(password.res), ["'self'", 'https://app.example.test']);
  // The federated redirect the username form leads to is one the page's CSP allowed.
  const federated = await get(`${interaction}/username`, {
    form: { username: 'bob@fabrikam.example', csrf: csrfOf(username.text) },
  });
  assert.equal(federated.res.status, 303);
  assert.ok(formAction(username.res).includes(new URL(String(federated.res.headers.get('location'))).origin));
});

test('form_post: the script hash is allowed and the form may post to the registered redirect URI only', async () => {
  const { get, interaction } = await startSignIn({ response_mode: 'form_post' });
  const page = await get(interaction);
  const step2 = await get(`${interaction}/username`, {
    form: { username: 'admin@headers.example', csrf: csrfOf(page.text) },
  });
  const done = await get(`${interaction}/password`, {
    form: { username: 'admin@headers.example', password: PW, csrf: csrfOf(step2.text) },
  });
  assert.equal(done.res.status, 303);
  const resume = await get(String(done.res.headers.get('location')));
  assert.equal(resume.res.status, 200, resume.text.slice(0, 200));
  assert.match(resume.text, new RegExp(`<form method="post" action="${REDIRECT}">`));
  assert.deepEqual(formAction(resume.res), ["'self'", 'https://app.example.test']);
  const script = /<script>([\s\S]*?)<\/script>/.exec(resume.text)?.[1] ?? '';
  const hash = createHash('sha256').update(script).digest('base64');
  assert.match(csp(resume.res), new RegExp(`script-src '(sha256-${hash.replace(/[+/]/g, '\\$&')})'`));
  assert.doesNotMatch(csp(resume.res), /'none' 'sha256/, 'no placeholder left beside the hash');
  assert.equal(resume.res.headers.get('strict-transport-security'), HSTS);
});

test('pageCsp and formTarget: origins and native-app schemes only, nothing that could break the header', () => {
  assert.equal(formTarget('https://app.example.test/cb?x=1'), 'https://app.example.test');
  assert.equal(formTarget('http://127.0.0.1:3000/callback'), 'http://127.0.0.1:3000');
  assert.equal(formTarget('com.example.app:/oauth'), 'com.example.app:');
  assert.equal(formTarget('not a url; script-src *'), undefined);
  assert.equal(formTarget(undefined), undefined);
  assert.equal(
    pageCsp(['https://a.example', 'https://a.example', undefined]),
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https://a.example; frame-ancestors 'none'; base-uri 'none'",
  );
});
