/**
 * The whole product, as a customer runs it: a real OpenLDAP directory, the cloud (in this
 * process, its log captured), a real agent process registered with a one-time token, the sample
 * app as a child process, Chromium as the user's browser and openid-client as a legacy client.
 * Every directory user's password is a canary that must never reach a log line or a file.
 */
import assert from 'node:assert/strict';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as oidc from 'openid-client';
import type { Browser, Page } from 'playwright-core';
import { startCloud } from '../apps/cloud/src/server.ts';
import { accessibilityViolations, launchBrowser, newContext, serverSpki } from './harness/browser.ts';
import {
  type Child,
  freePort,
  ROOT,
  registerAgentCli,
  runNode,
  spawnNode,
  waitFor,
} from './harness/children.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';

const DOMAIN = 'example.test';
const CANARY = `Canary-${Math.random().toString(36).slice(2, 10)}-Pw9`;
const ADMIN_CANARY = `AdminCanary-${Math.random().toString(36).slice(2, 10)}-Pw9`;
const ADMIN = `admin@${DOMAIN}`;
const dir = mkdtempSync(join(tmpdir(), 'gh-e2e-'));
const cloudDir = join(dir, 'cloud');
const agentDir = join(dir, 'agent');

let slapd: SlapdInstance;
let cloud: Awaited<ReturnType<typeof startCloud>>;
let agent: Child;
let app: Child;
let browser: Browser;
let tenantId: string;
let issuer: string;
let appUrl: string;
let legacyClientId: string;
let firstToken: string;
const cloudLog: string[] = [];
const outputs: string[] = [];

const cliEnv = () => ({
  ...process.env,
  GATEHOUSE_CLOUD_DATA_DIR: cloudDir,
  GATEHOUSE_CLOUD_PUBLIC_URL: cloud.url,
});

/** The operator CLI as a separate process on the cloud's data directory. */
const gatehouse = async (...args: string[]): Promise<{ code: number; json: Record<string, unknown> }> => {
  const r = await runNode(join(ROOT, 'apps/cloud/src/cli.ts'), [...args, '--json'], { env: cliEnv() });
  outputs.push(r.stdout, r.stderr);
  return { code: r.code, json: r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {} };
};
const ok = async (...args: string[]) => {
  const r = await gatehouse(...args);
  assert.equal(r.code, 0, `gatehouse ${args.join(' ')}: ${JSON.stringify(r.json)}`);
  return r.json;
};

const registerAgent = async (stateDir: string, token: string) => {
  const caFile = join(cloudDir, 'tls', 'ca.pem');
  const r = await registerAgentCli({ cloudUrl: cloud.url, caFile, token, stateDir });
  outputs.push(r.stdout, r.stderr);
  return r;
};

const rp = async (): Promise<oidc.Configuration> =>
  oidc.discovery(new URL(issuer), legacyClientId, undefined, oidc.None(), {
    [oidc.customFetch]: pinnedFetch(cloud.caCert) as oidc.CustomFetch,
  });

const passwordGrant = async (username: string, password: string, scope = 'openid profile') =>
  oidc.genericGrantRequest(await rp(), 'password', { username, password, scope });

/**
 * The OAuth error a rejected grant gave: status, error, description and our catalog code.
 * openid-client parses 400/401 bodies itself; for other statuses (503 no_agent) it hands over
 * the raw Response as the cause, so the body is read from there.
 */
const grantError = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { status?: number; error?: string; error_description?: string; cause?: unknown };
    const body = (e.cause instanceof Response ? await e.cause.json() : (e.cause ?? {})) as {
      error?: string;
      error_description?: string;
      error_code?: string;
    };
    return {
      status: e.cause instanceof Response ? e.cause.status : e.status,
      error: body.error ?? e.error,
      description: body.error_description ?? e.error_description,
      code: body.error_code,
    };
  }
  assert.fail('the grant was expected to fail');
};

/** Signs in through the sample app's "Sign in" link and the cloud's two sign-in pages. */
const browserSignIn = async (page: Page, upn: string, password: string) => {
  await page.goto(appUrl);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.getByLabel('Email or user name').fill(upn);
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
};
const claim = (page: Page, label: string) =>
  page
    .getByRole('table', { name: 'ID token claims' })
    .getByRole('row', { name: new RegExp(`^${label}\\b`) })
    .getByRole('cell')
    .textContent();

before(async () => {
  slapd = await startSlapd({
    users: [
      { uid: 'alice', cn: 'Alice Anders', mail: `alice@${DOMAIN}`, password: CANARY },
      { uid: 'bob', cn: 'Bob Brown', mail: `bob@${DOMAIN}`, password: CANARY },
    ],
  });
  cloud = await startCloud(
    { dataDir: cloudDir, port: 0, gatewayPort: 0, logLevel: 'debug' },
    { env: {}, logDestination: { write: (s: string) => void cloudLog.push(s) } },
  );
  const adminFile = join(dir, 'admin-password');
  writeFileSync(adminFile, ADMIN_CANARY, { mode: 0o600 });
  const t = await ok(
    'tenant',
    'create',
    '--name',
    'E2E',
    '--domain',
    DOMAIN,
    '--admin-upn',
    ADMIN,
    '--admin-password-file',
    adminFile,
  );
  tenantId = String(t.tenantId);
  issuer = `${cloud.url}/${tenantId}/v2.0`;
  await ok('domain', 'verify', '--tenant', tenantId, '--name', DOMAIN, '--force');
  const appPort = await freePort();
  appUrl = `http://127.0.0.1:${appPort}`;
  const appClient = await ok(
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Sample',
    '--redirect-uri',
    `${appUrl}/callback`,
    '--public',
  );
  const legacy = await ok(
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Legacy',
    '--redirect-uri',
    `${appUrl}/unused`,
    '--public',
    '--grant-type',
    'password',
  );
  legacyClientId = String(legacy.clientId);

  firstToken = String((await ok('token', 'create', '--tenant', tenantId)).token);
  writeFileSync(join(dir, 'bind-password'), slapd.servicePassword, { mode: 0o600 });
  const reg = await registerAgent(agentDir, firstToken);
  assert.equal(reg.code, 0, `agent register: ${reg.stderr}`);
  writeFileSync(
    join(agentDir, 'config.json'),
    JSON.stringify({
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPasswordFile: join(dir, 'bind-password'),
        baseDns: [slapd.peopleDn],
      },
      logLevel: 'debug',
    }),
  );
  agent = spawnNode('agent', join(ROOT, 'apps/agent/src/main.ts'), ['run', '--state-dir', agentDir]);
  await waitFor(
    'the agent to be active',
    async () => (await cloud.dispatcher.activeAgentCount(tenantId)) > 0,
  );
  await ok('settings', 'set', '--tenant', tenantId, '--pta', 'on', '--legacy-auth', 'on');
  await waitFor('the first sync', async () => {
    const { json } = await gatehouse('user', 'list', '--tenant', tenantId);
    const upns = ((json.users ?? []) as { upn: string }[]).map((u) => u.upn);
    return upns.includes(`alice@${DOMAIN}`) && upns.includes(`bob@${DOMAIN}`);
  });

  app = spawnNode('sample-app', join(ROOT, 'apps/sample-app/src/main.ts'), [
    '--issuer',
    issuer,
    '--client-id',
    String(appClient.clientId),
    '--ca-file',
    join(cloudDir, 'tls', 'ca.pem'),
    '--port',
    String(appPort),
    '--log-level',
    'debug',
  ]);
  await waitFor('the sample app', async () => (await fetch(`${appUrl}/healthz`)).ok);
  browser = await launchBrowser({ pinnedSpki: [await serverSpki(cloud.url, cloud.caCert)] });
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await agent?.stop();
  await cloud?.stop();
  await slapd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a directory user signs in through the sample app and sees their claims', async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await browserSignIn(page, `alice@${DOMAIN}`, CANARY);
  await page.waitForURL(`${appUrl}/profile`);
  assert.equal(await claim(page, 'Name'), 'Alice Anders');
  assert.equal(await claim(page, 'User principal name'), `alice@${DOMAIN}`);
  assert.equal(await claim(page, 'Tenant ID'), tenantId);
  assert.equal(await claim(page, 'Issuer'), issuer);
  await ctx.close();
});

test('the password grant and refresh work with openid-client', async () => {
  const config = await rp();
  const tokens = await oidc.genericGrantRequest(config, 'password', {
    username: `bob@${DOMAIN}`,
    password: CANARY,
    scope: 'openid profile offline_access',
  });
  assert.equal(tokens.claims()?.upn, `bob@${DOMAIN}`);
  assert.equal(tokens.claims()?.tid, tenantId);
  assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token);
  assert.notEqual(refreshed.access_token, tokens.access_token);
});

test('a wrong password and an unknown user get the same invalid-credentials answer', async () => {
  const wrong = await grantError(passwordGrant(`alice@${DOMAIN}`, `${CANARY}-wrong`));
  const unknown = await grantError(passwordGrant(`nobody@${DOMAIN}`, CANARY));
  assert.deepEqual(wrong, unknown);
  assert.equal(wrong.code, 'invalid_credentials');
  assert.equal(wrong.error, 'invalid_grant');
});

test('the sign-in pages pass axe (WCAG 2 A and AA), the error state included', async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const problems: string[] = [];
  const check = async (state: string) => {
    for (const v of await accessibilityViolations(page)) problems.push(`${state}: ${v.id} (${v.help})`);
  };
  await page.goto(appUrl);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.getByLabel('Email or user name').waitFor();
  await check('user name page');
  await page.getByLabel('Email or user name').fill(`alice@${DOMAIN}`);
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('Password').fill('Not-the-password-1');
  await check('password page');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').waitFor();
  await check('password page with an error');
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('the agent process has no listening TCP socket, only outbound connections', () => {
  const inodes = new Set(
    readdirSync(`/proc/${agent.pid}/fd`)
      .map((fd) => {
        try {
          return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${agent.pid}/fd/${fd}`))?.[1];
        } catch {
          return undefined;
        }
      })
      .filter((x): x is string => x !== undefined),
  );
  const mine = ['tcp', 'tcp6'].flatMap((f) =>
    readFileSync(`/proc/${agent.pid}/net/${f}`, 'utf8')
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((cols) => cols.length > 9 && inodes.has(cols[9])),
  );
  const LISTEN = '0A';
  const ESTABLISHED = '01';
  assert.deepEqual(
    mine.filter((c) => c[3] === LISTEN),
    [],
    'the agent must not listen',
  );
  assert.ok(
    mine.some((c) => c[3] === ESTABLISHED),
    'the agent holds its outbound connection',
  );
});

test('registration with a reused or an expired token is refused', async () => {
  const reused = await registerAgent(mkdtempSync(join(dir, 'reuse-')), firstToken);
  assert.notEqual(reused.code, 0);
  assert.match(reused.stderr, /registration_token_invalid/);

  const { token } = await ok('token', 'create', '--tenant', tenantId);
  // Expire it in the store (the shortest TTL the CLI accepts is 30 s).
  await cloud.ctx.db
    .updateTable('registration_tokens')
    .set({ expires_at: Date.now() - 1000 })
    .where('tenant_id', '=', tenantId)
    .where('used_at', 'is', null)
    .execute();
  const expired = await registerAgent(mkdtempSync(join(dir, 'expired-')), String(token));
  assert.notEqual(expired.code, 0);
  assert.match(expired.stderr, /registration_token_invalid/);
});

test('with no agent connected, a synced user gets no_agent within a second', async () => {
  await agent.stop();
  await waitFor(
    'the gateway to see the agent gone',
    async () => (await cloud.dispatcher.activeAgentCount(tenantId)) === 0,
    10_000,
  );
  // An agent that left moments ago is waited for (agentReconnectWaitMs); past that, no waiting.
  await new Promise((r) => setTimeout(r, cloud.ctx.config.agentReconnectWaitMs + 200));
  const t0 = performance.now();
  const e = await grantError(passwordGrant(`alice@${DOMAIN}`, CANARY));
  const ms = performance.now() - t0;
  assert.equal(e.code, 'no_agent');
  assert.equal(e.error, 'temporarily_unavailable');
  assert.ok(ms < 1000, `answered in ${ms.toFixed(0)} ms`);

  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await browserSignIn(page, `alice@${DOMAIN}`, CANARY);
  await page.getByRole('alert').getByText('no_agent').waitFor();
  await ctx.close();
});

test('the cloud-only administrator signs in while no agent is connected', async () => {
  assert.equal(await cloud.dispatcher.activeAgentCount(tenantId), 0);
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await browserSignIn(page, ADMIN, ADMIN_CANARY);
  await page.waitForURL(`${appUrl}/profile`);
  assert.equal(await claim(page, 'User principal name'), ADMIN);
  await ctx.close();
});

test('no password appears in any log line or stored file', async () => {
  const lines = [...cloudLog, ...outputs, agent.output(), app.output()].join('\n');
  assert.ok(cloudLog.length > 10 && agent.output().length > 0, 'logs were captured');
  for (const secret of [CANARY, ADMIN_CANARY, slapd.servicePassword]) {
    assert.ok(!lines.includes(secret), 'a password was logged');
  }

  const files = (root: string): string[] =>
    readdirSync(root, { recursive: true, encoding: 'utf8' })
      .map((f) => join(root, f))
      .filter((f) => statSync(f).isFile());
  const stored = [...files(cloudDir), ...files(agentDir)];
  assert.ok(
    stored.some((f) => f.endsWith('.db')),
    'the database file was found',
  );
  for (const f of stored) {
    const bytes = readFileSync(f);
    for (const secret of [CANARY, ADMIN_CANARY]) {
      assert.equal(bytes.indexOf(secret), -1, `a password is stored in ${f}`);
    }
  }
});
