/**
 * The pages' CSP form-action, in a real browser: Chromium checks form-action on every redirect
 * that follows a form post too, so a policy of 'self' alone would stop a sign-in at its last hop.
 * A control page shows this Chromium enforces that; then each flow whose forms lead elsewhere is
 * run to its end: the code flow back to the application, response_mode=form_post, the logout
 * confirmation back to the post-logout URI, and a federated user name to its identity provider.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttp, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { type RunningCloud, startCloud } from '../apps/cloud/src/server.ts';
import { createClient } from '../apps/cloud/src/store/clients.ts';
import { addDomain, setDomainKind, verifyDomain } from '../apps/cloud/src/store/domains.ts';
import { createTenant } from '../apps/cloud/src/store/tenants.ts';
import { accessibilityViolations, launchBrowser, newContext, serverSpki } from './harness/browser.ts';
import { waitFor } from './harness/children.ts';

const PW = `Pw-${Math.random().toString(36).slice(2)}-1!`;
const dir = mkdtempSync(join(tmpdir(), 'gh-page-headers-'));
let cloud: RunningCloud;
let browser: Browser;
let tenantId: string;
let clientId: string;
let rp: Server;
let rpUrl: string;
let idp: Server;
let idpUrl: string;
/** Every request the application and the identity provider received: "METHOD /path body". */
const seen: string[] = [];

const record = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString('utf8');
    });
    req.on('end', () => {
      const line = `${req.method} ${req.url} ${body}`;
      seen.push(line);
      resolve(line);
    });
  });

const listen = async (s: Server) => {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
};

before(async () => {
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      port: 0,
      gatewayPort: 0,
      publicUrl: 'https://localhost:0',
      logLevel: 'warn',
    },
    { env: {} },
  );
  idp = createHttps({ key: cloud.ctx.tls.key, cert: cloud.ctx.tls.cert }, async (req, res) => {
    await record(req);
    res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>Identity provider</h1>');
  });
  idpUrl = `https://localhost:${await listen(idp)}`;
  rp = createHttp(async (req, res) => {
    await record(req);
    if (req.url === '/control') {
      // A page whose CSP allows only itself, and whose form's answer redirects elsewhere.
      res.writeHead(200, { 'content-type': 'text/html', 'content-security-policy': "form-action 'self'" });
      return res.end('<form method="post" action="/control/submit"><button>Send</button></form>');
    }
    if (req.url === '/control/submit') return res.writeHead(303, { location: `${idpUrl}/elsewhere` }).end();
    res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>Application</h1>');
  });
  rpUrl = `http://127.0.0.1:${await listen(rp)}`;

  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'Page headers',
    domain: 'headers.example',
    admin: { upn: 'admin@headers.example', password: PW },
  }));
  await addDomain(cloud.ctx.db, tenantId, 'fabrikam.example');
  await verifyDomain(cloud.ctx.db, tenantId, 'fabrikam.example', { force: true });
  await setDomainKind(cloud.ctx.db, tenantId, 'fabrikam.example', {
    kind: 'federated',
    federationUrl: `${idpUrl}/sso`,
  });
  ({ clientId } = await createClient(cloud.ctx.db, tenantId, {
    name: 'Application',
    redirectUris: [`${rpUrl}/cb`],
    postLogoutRedirectUris: [`${rpUrl}/bye`],
    public: true,
  }));
  const spki = await serverSpki(cloud.url, cloud.caCert);
  browser = await launchBrowser({ pinnedSpki: [spki] });
});

after(async () => {
  await browser?.close();
  await cloud?.stop();
  rp?.close();
  idp?.close();
  rmSync(dir, { recursive: true, force: true });
});

const authorizeUrl = (extra: Record<string, string> = {}) => {
  const q = new URLSearchParams({
    client_id: clientId,
    redirect_uri: `${rpUrl}/cb`,
    response_type: 'code',
    scope: 'openid',
    // RFC 7636 appendix B's example pair: the challenge of a fixed verifier is all the test needs.
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuM-bjy6sFE',
    code_challenge_method: 'S256',
    state: 'st',
    ...extra,
  });
  return `${cloud.url}/${tenantId}/v2.0/auth?${q}`;
};

/** CSP violations the page reports, so a failure says which directive refused what. */
const violations = (page: Page): string[] => {
  const out: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|form-action/i.test(m.text())) out.push(m.text());
  });
  return out;
};

const arrived = (prefix: string) =>
  waitFor(`a request ${prefix}`, () => seen.find((l) => l.startsWith(prefix)), 15_000, 100);

const signIn = async (page: Page, username: string) => {
  await page.getByLabel(/email or user name/i).fill(username);
  await page.getByRole('button', { name: 'Next' }).click();
  if (username.endsWith('@fabrikam.example')) return;
  await page.getByLabel('Password').fill(PW);
  await page.getByRole('button', { name: 'Sign in' }).click();
};

test('control: this Chromium applies form-action to the redirect after a form post', async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const csp = violations(page);
  await page.goto(`${rpUrl}/control`);
  await page.getByRole('button', { name: 'Send' }).click();
  await arrived('POST /control/submit');
  await waitFor('the browser to report the blocked redirect', () => csp.length > 0, 10_000, 100);
  assert.ok(!seen.some((l) => l.startsWith('GET /elsewhere')), 'the redirect was followed');
  await ctx.close();
});

test('code flow: the password form leads back to the application; then logout confirms back to it', async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const csp = violations(page);
  await page.goto(authorizeUrl());
  await signIn(page, 'admin@headers.example');
  const cb = await arrived('GET /cb?code=');
  assert.match(cb, /state=st/);
  assert.deepEqual(csp, []);

  const end = new URLSearchParams({ client_id: clientId, post_logout_redirect_uri: `${rpUrl}/bye` });
  await page.goto(`${cloud.url}/${tenantId}/v2.0/session/end?${end}`);
  assert.deepEqual(await accessibilityViolations(page), [], 'the logout page passes axe');
  await page.getByRole('button', { name: /yes, sign me out/i }).click();
  await arrived('GET /bye');
  assert.deepEqual(csp, [], 'the logout confirmation reached the post-logout URI');
  await ctx.close();
});

test('response_mode=form_post: the inline script runs and posts the code to the application', async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const csp = violations(page);
  await page.goto(authorizeUrl({ response_mode: 'form_post', state: 'fp' }));
  await signIn(page, 'admin@headers.example');
  const post = await arrived('POST /cb ');
  assert.match(post, /code=/);
  assert.match(post, /state=fp/);
  assert.deepEqual(csp, []);
  await ctx.close();
});

test('a federated user name leads from the sign-in form to its identity provider', async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const csp = violations(page);
  await page.goto(authorizeUrl());
  await signIn(page, 'bob@fabrikam.example');
  await arrived('GET /sso');
  assert.deepEqual(csp, []);
  await ctx.close();
});
