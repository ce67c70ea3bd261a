/**
 * Interactive agent registration (RFC 8628 device authorization grant), as an administrator does it:
 * the real agent CLI prints a code, the administrator approves it in a real browser, the agent
 * finishes registering with keys it made itself. A denial stops it; a user without an admin role
 * cannot approve.
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

const decide = async (link: string, upn: string, action: 'Approve' | 'Deny') => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(link);
  const violations = await accessibilityViolations(page);
  assert.deepEqual(violations, [], 'the approval page passes axe (WCAG 2 A and AA)');
  // What the approver cannot trust is said on the page, next to what the cloud saw itself.
  const asking = page.getByRole('region', { name: 'Who is asking' });
  await asking.waitFor();
  const details = String(await asking.textContent());
  assert.match(details, /the requester's own claim/);
  assert.match(details, /Requested from\s*127\.0\.0\.1/);
  assert.match(details, /Requested at\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
  assert.match(details, /Gatehouse has not checked the\s+host name/);
  await page.getByLabel(/email|user name/i).fill(upn);
  await page.getByLabel('Password').fill(ADMIN_PW);
  await page.getByRole('button', { name: action }).click();
  const heading = await page.getByRole('heading', { level: 1 }).textContent();
  await ctx.close();
  return heading ?? '';
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

test('a user without an admin role cannot approve; a denial stops the agent', async () => {
  const { agent, link } = await startDeviceRegistration('denied');
  assert.notEqual(await decide(link, 'clerk@device.example', 'Approve'), 'Agent approved');
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
