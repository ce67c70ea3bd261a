/**
 * Applications in the admin center, in headless Chromium: the Global Administrator signs in,
 * registers a confidential app with a redirect and a post-logout URI and reads its secret once;
 * the secret works at the tenant's token endpoint; the app is edited (name, URIs, admin role),
 * given a new secret (the old one stops working) and deleted (the API no longer knows it). A
 * reader sees the list without the buttons. The page passes axe. A screenshot goes to
 * docs/screenshots/ when run as `npm run screenshots`.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { type RunningCloud, startCloud } from '../apps/cloud/src/server.ts';
import { createTenant } from '../apps/cloud/src/store/tenants.ts';
import { createCloudUser } from '../apps/cloud/src/store/users.ts';
import { accessibilityViolations, launchBrowser, newContext, serverSpki } from './harness/browser.ts';
import { ROOT } from './harness/children.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';

const PW = `Admin-${Math.random().toString(36).slice(2, 10)}-Pw9`;
const dir = mkdtempSync(join(tmpdir(), 'gh-admin-apps-'));
const SHOTS = process.env.SCREENSHOTS === 'docs' ? join(ROOT, 'docs', 'screenshots') : join(dir, 'shots');
let cloud: RunningCloud;
let browser: Browser;
let page: Page;
let tenantId: string;
let f: typeof fetch;

const signIn = async (p: Page, upn: string, password: string) => {
  await p.goto(`${cloud.url}/${tenantId}/admin/#apps`);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.getByLabel('Email or user name').fill(upn);
  await p.getByRole('button', { name: 'Next' }).click();
  await p.getByLabel('Password').fill(password);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.getByRole('heading', { level: 1, name: 'Applications' }).waitFor();
};

const tokenStatus = async (clientId: string, secret: string) =>
  (
    await f(`${cloud.url}/${tenantId}/v2.0/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials',
    })
  ).status;

const shownSecret = async () => {
  const box = page.locator('[data-secret]');
  await box.waitFor();
  const secret = (await box.getByLabel('Client secret').textContent()) ?? '';
  const clientId = (await box.locator('code').nth(1).textContent()) ?? '';
  return { secret, clientId };
};

const appRow = (name: string) =>
  page.getByRole('region', { name: 'Applications' }).locator('tbody tr', { hasText: name });

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
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
  f = pinnedFetch(cloud.caCert);
  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'Contoso',
    domain: 'contoso.test',
    admin: { upn: 'admin@contoso.test', password: PW },
  }));
  await createCloudUser(cloud.ctx.db, tenantId, {
    upn: 'reader@contoso.test',
    password: PW,
    roles: ['reader'],
  });
  browser = await launchBrowser({ pinnedSpki: [await serverSpki(cloud.url, cloud.caCert)] });
  page = await (await newContext(browser)).newPage();
});

after(async () => {
  await browser?.close();
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let app = { clientId: '', secret: '' };

test('register an app: its secret is shown once and works at the token endpoint', async () => {
  await signIn(page, 'admin@contoso.test', PW);
  await page.getByRole('button', { name: 'Register an application' }).click();
  const form = page.getByRole('form', { name: 'Register an application' });
  await form.getByLabel('Name', { exact: true }).fill('Payroll');
  await form
    .getByLabel('Redirect URIs (one per line)', { exact: true })
    .fill('https://payroll.contoso.test/cb');
  await form.getByLabel('Post-logout redirect URIs (one per line)').fill('https://payroll.contoso.test/bye');
  await form.getByLabel('Client credentials (the app as itself)').check();
  await form.getByRole('button', { name: 'Register' }).click();
  app = await shownSecret();
  assert.ok(app.secret.length >= 43, app.secret);
  await appRow('Payroll').waitFor();
  assert.match((await appRow('Payroll').textContent()) ?? '', /payroll\.contoso\.test\/bye/);
  assert.equal(await tokenStatus(app.clientId, app.secret), 200);
  await page.goto(`${cloud.url}/${tenantId}/admin/#overview`);
  await page.goto(`${cloud.url}/${tenantId}/admin/#apps`);
  await appRow('Payroll').waitFor();
  assert.equal(await page.locator('[data-secret]').count(), 0, 'the secret is gone once the page changes');
  assert.ok(!(await page.content()).includes(app.secret));
});

test('edit the app, give it a new secret, and the old one stops working', async () => {
  await page.getByRole('button', { name: 'Edit Payroll' }).click();
  const form = page.getByRole('form', { name: 'Edit Payroll' });
  await form.getByLabel('Name', { exact: true }).fill('Payroll 2');
  await form.getByLabel('Post-logout redirect URIs (one per line)').fill('https://payroll2.contoso.test/bye');
  await form.getByLabel('Reader', { exact: true }).check();
  await form.getByLabel('ID token signing algorithm').selectOption('RS256');
  await form.getByRole('button', { name: 'Save' }).click();
  await appRow('Payroll 2').waitFor();
  const row = (await appRow('Payroll 2').textContent()) ?? '';
  assert.match(row, /payroll2\.contoso\.test\/bye/);
  assert.match(row, /reader/);
  assert.match(row, /RS256/, 'the ID token algorithm chosen in the editor is the one stored');
  const res = await f(`${cloud.url}/${tenantId}/api/v1/apps/${app.clientId}`, {
    headers: { authorization: 'Bearer nope' },
  });
  assert.equal(res.status, 401, 'the API behind the page wants a token');

  await page.getByRole('button', { name: 'New secret for Payroll 2' }).click();
  const rotated = await shownSecret();
  assert.notEqual(rotated.secret, app.secret);
  await new Promise((r) => setTimeout(r, 1300)); // the provider's one-second client cache
  assert.equal(await tokenStatus(app.clientId, app.secret), 401, 'the old secret is refused');
  assert.equal(await tokenStatus(app.clientId, rotated.secret), 200, 'the new one works');
  await page.screenshot({ path: join(SHOTS, 'applications.png'), fullPage: true });
  assert.deepEqual(await accessibilityViolations(page), [], 'the Applications page passes axe');
});

test('delete the app: it is gone from the list and from the API', async () => {
  await page.getByRole('button', { name: 'Delete Payroll 2' }).click();
  await page.getByRole('button', { name: 'Yes, delete Payroll 2' }).click();
  // Said twice, on the page and in the live region for screen readers: the visible one.
  await page.locator('#main').getByText('Payroll 2 deleted.').waitFor();
  // The message is said before the list reloads: wait for the reload, then count.
  await appRow('Payroll 2').waitFor({ state: 'detached', timeout: 5_000 });
  assert.equal(await appRow('Payroll 2').count(), 0);
  const row = await cloud.ctx.db
    .selectFrom('clients')
    .select('client_id')
    .where('client_id', '=', app.clientId)
    .executeTakeFirst();
  assert.equal(row, undefined);
});

test('a reader sees the applications but no button that changes them', async () => {
  const ctx = await newContext(browser);
  const p = await ctx.newPage();
  await signIn(p, 'reader@contoso.test', PW);
  await p.getByRole('region', { name: 'Applications' }).waitFor();
  assert.equal(await p.getByRole('button', { name: 'Register an application' }).count(), 0);
  await ctx.close();
});
