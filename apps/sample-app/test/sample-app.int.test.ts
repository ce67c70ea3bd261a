/**
 * The sample app against a real OpenID provider (node-oidc-provider over HTTPS with a private CA
 * made here by openssl) and a real Chromium. This checks the relying party on its own; the whole
 * product (Gatehouse cloud, agent, directory) is covered by test/e2e-signin.test.ts.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Provider from 'oidc-provider';
import type { Browser } from 'playwright-core';
import { launchBrowser, newContext, serverSpki } from '../../../test/harness/browser.ts';
import { loadSampleAppConfig } from '../src/config.ts';
import { type SampleApp, startSampleApp } from '../src/main.ts';

const dir = mkdtempSync(join(tmpdir(), 'sample-app-test-'));
/** Runs openssl in the temp dir; arguments are split on spaces (none of ours contain one). */
const openssl = (cmd: string) => execFileSync('openssl', cmd.split(' '), { cwd: dir, stdio: 'pipe' });
const EC = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes';

/** A CA and a localhost certificate it signs; a second, unrelated CA for the pinning check. */
const makePki = () => {
  for (const name of ['ca', 'other-ca']) {
    openssl(
      `req -x509 ${EC} -days 2 -subj /CN=${name} -keyout ${name}.key -out ${name}.pem ` +
        '-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign',
    );
  }
  openssl(`req ${EC} -subj /CN=localhost -keyout server.key -out server.csr`);
  writeFileSync(
    join(dir, 'ext.cnf'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    'x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.pem',
  );
};

let op: Server;
let issuer: string;
let app: SampleApp;
let browser: Browser;
/** The app's port must be known before the provider registers its redirect URI: ask the OS for a free one. */
const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
let appPort: number;

before(async () => {
  appPort = await freePort();
  makePki();
  const account = {
    sub: 'u-alice',
    name: 'Alice Example',
    upn: 'alice@example.test',
    email: 'alice@example.test',
    tid: 't-1234',
  };
  op = createServer({
    key: readFileSync(join(dir, 'server.key')),
    cert: readFileSync(join(dir, 'server.pem')),
  });
  await new Promise<void>((r) => op.listen(0, '127.0.0.1', r));
  issuer = `https://localhost:${(op.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'sample',
        token_endpoint_auth_method: 'none',
        redirect_uris: [`http://127.0.0.1:${appPort}/callback`],
        grant_types: ['authorization_code', 'refresh_token'],
      },
    ],
    claims: { openid: ['sub', 'tid', 'upn'], profile: ['name'], email: ['email'] },
    conformIdTokenClaims: false,
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ ...account, sub }) }),
  });
  op.on('request', provider.callback());
  app = await startSampleApp(
    loadSampleAppConfig(
      [
        '--issuer',
        issuer,
        '--client-id',
        'sample',
        '--ca-file',
        join(dir, 'ca.pem'),
        '--port',
        String(appPort),
      ],
      { SAMPLE_APP_LOG_LEVEL: 'silent' },
    ),
  );
  browser = await launchBrowser({
    pinnedSpki: [await serverSpki(issuer, readFileSync(join(dir, 'ca.pem'), 'utf8'))],
  });
});

after(async () => {
  await browser?.close();
  await app?.close();
  op?.closeAllConnections();
  await new Promise((r) => op?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test('a user signs in, sees the ID token claims in a table, and signs out', async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(app.url);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.locator('input[name="login"]').fill('u-alice');
  await page.locator('input[name="password"]').fill('anything');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${app.url}/profile`);

  const table = page.getByRole('table', { name: 'ID token claims' });
  const cell = (label: string) =>
    table.getByRole('row', { name: new RegExp(`^${label}\\b`) }).getByRole('cell');
  assert.equal(await cell('Name').textContent(), 'Alice Example');
  assert.equal(await cell('User principal name').textContent(), 'alice@example.test');
  assert.equal(await cell('Tenant ID').textContent(), 't-1234');
  assert.equal(await cell('Issuer').textContent(), issuer);
  assert.match((await page.textContent('body')) ?? '', /The access token expires at \d{4}-/);

  const [cookie] = await ctx.cookies(app.url);
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Lax');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${app.url}/`);
  assert.ok(await page.getByRole('link', { name: 'Sign in' }).isVisible());
  const res = await page.goto(`${app.url}/profile`);
  assert.equal(res?.url(), `${app.url}/`, 'the profile needs a session after sign-out');
  await ctx.close();
});

test('a visit on another name for the app is moved to its base URL first', async () => {
  const res = await fetch(`http://localhost:${appPort}/profile?x=1`, { redirect: 'manual' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), `${app.url}/profile?x=1`);
});

test('a callback that was not started here is refused', async () => {
  const res = await fetch(`${app.url}/callback?code=abc&state=xyz`);
  assert.equal(res.status, 400);
  assert.match(await res.text(), /not started here/);
});

test('a callback with a tampered state is refused', async () => {
  const login = await fetch(`${app.url}/login`, { redirect: 'manual' });
  const cookie = login.headers.get('set-cookie')?.split(';')[0] ?? '';
  const res = await fetch(`${app.url}/callback?code=abc&state=not-the-state`, { headers: { cookie } });
  assert.equal(res.status, 400);
  assert.match(await res.text(), /could not be completed/);
});

test('the authorization request carries PKCE S256, state and nonce', async () => {
  const login = await fetch(`${app.url}/login`, { redirect: 'manual' });
  const target = new URL(login.headers.get('location') ?? '');
  assert.equal(target.origin, issuer);
  assert.equal(target.searchParams.get('code_challenge_method'), 'S256');
  for (const p of ['code_challenge', 'state', 'nonce']) assert.ok(target.searchParams.get(p), p);
});

test('an issuer whose certificate does not chain to the pinned CA is refused', async () => {
  await assert.rejects(
    startSampleApp(
      loadSampleAppConfig(
        ['--issuer', issuer, '--client-id', 'sample', '--ca-file', join(dir, 'other-ca.pem')],
        {
          SAMPLE_APP_LOG_LEVEL: 'silent',
          SAMPLE_APP_PORT: '0',
        },
      ),
    ),
  );
});

test('the browser refuses a server whose key is not pinned', async () => {
  openssl(
    `req -x509 ${EC} -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout other.key -out other.pem`,
  );
  const other = createServer({
    key: readFileSync(join(dir, 'other.key')),
    cert: readFileSync(join(dir, 'other.pem')),
  });
  other.on('request', (_req, res) => res.end('other'));
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  try {
    await assert.rejects(
      page.goto(`https://localhost:${(other.address() as AddressInfo).port}/`),
      /ERR_CERT_AUTHORITY_INVALID/,
    );
    // A fresh page: the refused one is still settling on Chromium's error page.
    const ok = await (await ctx.newPage()).goto(`${issuer}/.well-known/openid-configuration`);
    assert.equal(ok?.status(), 200);
  } finally {
    await ctx.close();
    other.closeAllConnections();
    other.close();
  }
});

test('bad configuration is reported as config_invalid with every path', () => {
  assert.throws(
    () => loadSampleAppConfig(['--issuer', 'not a url', '--port', '99999'], {}),
    (err: { code?: string; detail?: Array<{ path: string }> }) =>
      err.code === 'config_invalid' &&
      ['issuer', 'clientId', 'port'].every((p) => err.detail?.some((d) => d.path === p)),
  );
  assert.throws(() => loadSampleAppConfig(['--nope', 'x'], {}), { name: 'GatehouseError' });
});
