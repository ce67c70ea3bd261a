/**
 * Interactive agent registration (RFC 8628 device authorization grant), as an administrator does it:
 * the real agent CLI prints a code, the administrator approves it in a real browser, the agent
 * finishes registering with keys it made itself. The approver signs in through the tenant's own
 * sign-in pages. A denial stops the agent; a signed-in user without an admin role cannot approve,
 * and neither can a POST without a session.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { type RunningCloud, startCloud } from '../apps/cloud/src/server.ts';
import { createTenant } from '../apps/cloud/src/store/tenants.ts';
import { createCloudUser } from '../apps/cloud/src/store/users.ts';
import { accessibilityViolations, launchBrowser, newContext, serverSpki } from './harness/browser.ts';
import { type Child, ROOT, spawnNode, waitFor } from './harness/children.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';

const ADMIN_PW = `Admin-${Math.random().toString(36).slice(2)}-1!`;
const dir = mkdtempSync(join(tmpdir(), 'gh-device-'));
let cloud: RunningCloud;
let browser: Browser;
let tenantId: string;
const children: Child[] = [];

before(async () => {
  cloud = await startCloud(
    { dataDir: join(dir, 'cloud'), port: 0, gatewayPort: 0, logLevel: 'warn' },
    { env: {} },
  );
  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'Device',
    domain: 'device.example',
    admin: { upn: 'admin@device.example', password: ADMIN_PW },
  }));
  await createCloudUser(cloud.ctx.db, tenantId, { upn: 'clerk@device.example', password: ADMIN_PW });
  browser = await launchBrowser({ pinnedSpki: [await serverSpki(cloud.url, cloud.caCert)] });
});

after(async () => {
  for (const c of children) await c.stop();
  await browser?.close();
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `register --device` and returns the process and the link it printed for the administrator. */
const startDeviceRegistration = async (name: string) => {
  const stateDir = join(dir, name);
  const agent = spawnNode(name, join(ROOT, 'apps/agent/src/main.ts'), [
    'register',
    '--cloud',
    cloud.url,
    '--ca-file',
    join(dir, 'cloud', 'tls', 'ca.pem'),
    '--device',
    '--tenant',
    tenantId,
    '--state-dir',
    stateDir,
  ]);
  children.push(agent);
  const link = await waitFor(
    'the agent to print its code',
    () => /\(or open (\S+)\)/.exec(agent.output())?.[1],
  );
  return { agent, link, stateDir };
};

/**
 * Opens the agent's link in a fresh browser, signs in as `upn` through the tenant's sign-in pages
 * and, when the page lets them, presses `action`. Returns the heading the approver ends on.
 */
const decide = async (link: string, upn: string, action: 'Approve' | 'Deny') => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(link);
  assert.deepEqual(await accessibilityViolations(page), [], 'the signed-out page passes axe');
  assert.equal(await page.getByLabel('Password').count(), 0, 'the approval page asks for no password');
  assert.equal(
    await page.getByRole('region', { name: 'Who is asking' }).count(),
    0,
    'nothing before sign-in',
  );
  await page.getByRole('button', { name: 'Sign in' }).click();
  // The tenant's own sign-in pages, as for any application of the tenant.
  await page.waitForURL(new RegExp(`/${tenantId}/v2\\.0/interaction/`));
  await page.getByLabel('Email or user name').fill(upn);
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('Password').fill(ADMIN_PW);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === `/${tenantId}/agents/device`);
  const violations = await accessibilityViolations(page);
  assert.deepEqual(violations, [], 'the approval page passes axe (WCAG 2 A and AA)');
  const heading = page.getByRole('heading', { level: 1 });
  if ((await heading.textContent()) !== 'Approve a Gatehouse Agent') {
    const shown = String(await heading.textContent());
    await ctx.close();
    return shown;
  }
  assert.match(String(await page.getByText('Signed in as').textContent()), new RegExp(upn));
  // What the approver cannot trust is said on the page, next to what the cloud saw itself.
  const asking = page.getByRole('region', { name: 'Who is asking' });
  await asking.waitFor();
  const details = String(await asking.textContent());
  assert.match(details, /the requester's own claim/);
  assert.match(details, /Requested from\s*127\.0\.0\.1/);
  assert.match(details, /Requested at\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
  assert.match(details, /Gatehouse has not checked the\s+host name/);
  await page.getByRole('button', { name: action }).click();
  const done = await page.getByRole('heading', { level: 1 }).textContent();
  await ctx.close();
  return done ?? '';
};

/** A POST to the page from outside any browser session, with the form's fields filled in. */
const postWithoutSession = async (link: string) => {
  const url = new URL(link);
  const code = url.searchParams.get('user_code') ?? '';
  const res = await pinnedFetch(cloud.caCert)(`${url.origin}${url.pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: 'A'.repeat(43), user_code: code, action: 'approve', reviewed: code }),
  });
  return { status: res.status, text: await res.text() };
};

test('an administrator approves the code in the browser and the agent registers', async () => {
  const { agent, link, stateDir } = await startDeviceRegistration('approved');
  assert.match(link, new RegExp(`/${tenantId}/agents/device`));
  assert.equal(await decide(link, 'admin@device.example', 'Approve'), 'Agent approved');
  assert.equal(await agent.exited, 0, agent.output());
  const row = await cloud.ctx.db
    .selectFrom('agents')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  assert.equal(row.deleted_at, null);
  // The private keys were made on the agent host and are owner-only there.
  for (const f of ['tls.key', 'hpke.key']) {
    const p = join(stateDir, f);
    assert.ok(existsSync(p), `${f} exists`);
    assert.equal(statSync(p).mode & 0o077, 0, `${f} is private`);
  }
  const audit = await cloud.ctx.db
    .selectFrom('audit')
    .select('action')
    .where('tenant_id', '=', tenantId)
    .execute();
  assert.ok(audit.some((a) => a.action === 'agent.device_approved'));
});

test('a signed-in user without an admin role cannot approve; a denial stops the agent', async () => {
  const { agent, link } = await startDeviceRegistration('denied');
  assert.equal(await decide(link, 'clerk@device.example', 'Approve'), 'Not allowed to approve');
  assert.ok(agent.running(), 'the agent keeps waiting');
  assert.equal(await decide(link, 'admin@device.example', 'Deny'), 'Agent denied');
  assert.equal(await agent.exited, 1);
  assert.match(agent.output(), /access_denied/);
  const agents = await cloud.ctx.db
    .selectFrom('agents')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .execute();
  assert.equal(agents.length, 1, 'only the approved agent exists');
});

test('an approval posted without a signed-in session is refused', async () => {
  const { agent, link } = await startDeviceRegistration('unauthenticated');
  const res = await postWithoutSession(link);
  assert.equal(res.status, 401);
  assert.doesNotMatch(res.text, /Agent approved/);
  const row = await cloud.ctx.db
    .selectFrom('device_codes')
    .select('status')
    .where('user_code', '=', new URL(link).searchParams.get('user_code') ?? '')
    .executeTakeFirstOrThrow();
  assert.equal(row.status, 'pending', 'the code is still undecided');
  assert.ok(agent.running(), 'the agent keeps waiting');
  // The administrator can still deny it, which ends the agent.
  assert.equal(await decide(link, 'admin@device.example', 'Deny'), 'Agent denied');
  assert.equal(await agent.exited, 1);
});
