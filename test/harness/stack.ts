/**
 * The product as a customer runs it, for end-to-end suites: the cloud (in this process, logs
 * captured), a tenant with a verified domain and a password-grant client, and real agent processes
 * registered with one-time tokens against a real directory. Pass-through authentication is turned
 * on once an agent is active and the first sync has brought the users.
 *
 * The cloud trusts X-Forwarded-For from loopback, so a suite can play clients at different networks.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_NODE_FLAGS } from '../../apps/cloud/src/admin/agent-package.ts';
import { type RunningCloud, startCloud } from '../../apps/cloud/src/server.ts';
import type { TimingMask } from '../../apps/cloud/src/signin/timing-mask.ts';
import { createClient } from '../../apps/cloud/src/store/clients.ts';
import { verifyDomain } from '../../apps/cloud/src/store/domains.ts';
import { createRegistrationToken } from '../../apps/cloud/src/store/registration-tokens.ts';
import { getSyncRun, listSyncRuns, type SyncRun } from '../../apps/cloud/src/store/sync-runs.ts';
import { createTenant, updateSettings } from '../../apps/cloud/src/store/tenants.ts';
import { type Child, ROOT, registerAgentCli, spawnNode, waitFor } from './children.ts';
import { pinnedFetch } from './pinned-fetch.ts';

export interface DirectoryForAgent {
  kind: 'openldap' | 'ad';
  urls: string[];
  bindDn: string;
  bindPassword: string;
  baseDns: string[];
  /** Any other agent directory keys (caFile, tlsServerName, netbiosDomain...). */
  extra?: Record<string, unknown>;
}

/** The agent's view of a Samba AD DC from test/harness/samba.ts (service account: the domain admin). */
export const adDirectory = (dc: {
  url: string;
  adminUpn: string;
  adminPassword: string;
  baseDn: string;
  netbios: string;
}): DirectoryForAgent => ({
  kind: 'ad',
  urls: [dc.url],
  bindDn: dc.adminUpn,
  bindPassword: dc.adminPassword,
  baseDns: [`CN=Users,${dc.baseDn}`],
  extra: { netbiosDomain: dc.netbios },
});

export interface StackOptions {
  domain: string;
  directory: DirectoryForAgent;
  /** Users the first sync must bring before the stack is ready. */
  expectUsers: string[];
  agents?: number;
  cloud?: Record<string, unknown>;
  /** Cloud lockout settings for the tenant. */
  lockout?: { threshold: number; durationS: number };
  /** Other agent config keys (e.g. `sync`), merged into each agent's config.json. */
  agent?: Record<string, unknown>;
  /** The cloud's sign-in timing mask, for tests that watch what it records and holds. */
  timingMask?: TimingMask;
}

export interface GrantAnswer {
  status: number;
  /** Our catalog code (`error_code`), or 'success'. */
  code: string;
  body: Record<string, unknown>;
}

export interface Stack {
  cloud: RunningCloud;
  tenantId: string;
  issuer: string;
  agents: Child[];
  /** Each agent's state directory, in start order. */
  stateDirs: string[];
  /** Every byte the cloud logged and the agents printed (for canary checks). */
  output(): string;
  passwordGrant(username: string, password: string, opts?: { ip?: string }): Promise<GrantAnswer>;
  /** The browser flow over plain HTTP: user name page, then password page. Returns the page's code. */
  /** `ms` is the password step's answer time alone (what a prober of the page measures). */
  signInPage(
    username: string,
    password: string,
    opts?: { ip?: string },
  ): Promise<{ status: number; code: string; html: string; ms: number }>;
  /** Sign-in log rows of the tenant, newest first. */
  signIns(): Promise<Array<Record<string, unknown>>>;
  /** Waits until the tenant's latest sync run succeeded (the agent's first, after start). */
  firstSync(): Promise<void>;
  /** Asks an agent for a run (`mode`) and waits for its record to end. */
  syncRun(mode: 'full' | 'delta', timeoutMs?: number): Promise<SyncRun>;
  startAgent(): Promise<Child>;
  stop(): Promise<void>;
}

export const startStack = async (opts: StackOptions): Promise<Stack> => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-stack-'));
  const cloudLog: string[] = [];
  const outputs: string[] = [];
  const cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      port: 0,
      gatewayPort: 0,
      logLevel: 'debug',
      trustProxy: true,
      ...opts.cloud,
    },
    { env: {}, logDestination: { write: (s: string) => void cloudLog.push(s) }, timingMask: opts.timingMask },
  );
  const agents: Child[] = [];
  const stateDirs: string[] = [];
  const stop = async () => {
    for (const a of agents) await a.stop();
    await cloud.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const db = cloud.ctx.db;
    const { tenantId } = await createTenant(cloud.ctx, {
      name: 'Stack',
      domain: opts.domain,
      admin: { upn: `admin@${opts.domain}`, password: `Admin-${Math.random().toString(36).slice(2)}-1!` },
    });
    await verifyDomain(db, tenantId, opts.domain, { force: true });
    const client = await createClient(db, tenantId, {
      name: 'Legacy',
      redirectUris: ['https://app.example.test/callback'],
      public: true,
      grantTypes: ['authorization_code', 'refresh_token', 'password'],
    });
    const issuer = `${cloud.url}/${tenantId}/v2.0`;
    const f = pinnedFetch(cloud.caCert);
    const bindPasswordFile = join(dir, 'bind-password');
    writeFileSync(bindPasswordFile, opts.directory.bindPassword, { mode: 0o600 });

    const startAgent = async () => {
      const stateDir = join(dir, `agent-${agents.length + 1}`);
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      stateDirs.push(stateDir);
      const { token } = await createRegistrationToken(db, tenantId, 'stack', 600, Date.now());
      const reg = await registerAgentCli({
        cloudUrl: cloud.url,
        caFile: join(dir, 'cloud', 'tls', 'ca.pem'),
        token,
        stateDir,
      });
      outputs.push(reg.stdout, reg.stderr);
      assert.equal(reg.code, 0, `agent register: ${reg.stderr}`);
      const { kind, urls, bindDn, baseDns, extra } = opts.directory;
      writeFileSync(
        join(stateDir, 'config.json'),
        JSON.stringify({
          directory: { kind, urls, bindDn, bindPasswordFile, baseDns, ...extra },
          logLevel: 'debug',
          ...opts.agent,
        }),
      );
      const before = cloud.gateway.connections().length;
      const agent = spawnNode(
        `agent-${agents.length + 1}`,
        join(ROOT, 'apps/agent/src/main.ts'),
        ['run', '--state-dir', stateDir],
        // As the service runs it (the systemd unit's flags).
        { nodeArgs: AGENT_NODE_FLAGS },
      );
      agents.push(agent);
      await waitFor('the agent to connect', async () => {
        if (!agent.running()) throw new Error(`agent exited: ${agent.output()}`);
        return cloud.gateway.connections().filter((c) => c.ready).length > before;
      });
      return agent;
    };

    for (let i = 0; i < (opts.agents ?? 1); i++) await startAgent();
    await updateSettings(
      db,
      tenantId,
      {
        ptaEnabled: true,
        legacyAuth: true,
        ...(opts.lockout
          ? { lockoutThreshold: opts.lockout.threshold, lockoutDurationS: opts.lockout.durationS }
          : {}),
      },
      { activeAgents: await cloud.dispatcher.activeAgentCount(tenantId) },
    );
    cloud.authenticator.invalidate(tenantId);
    await waitFor(
      'the first sync',
      async () => {
        const rows = await db.selectFrom('users').select('upn').where('tenant_id', '=', tenantId).execute();
        const have = new Set(rows.map((r) => r.upn));
        return opts.expectUsers.every((u) => have.has(u.toLowerCase()));
      },
      30_000,
    );

    const passwordGrant: Stack['passwordGrant'] = async (username, password, o = {}) => {
      const res = await f(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(o.ip ? { 'x-forwarded-for': o.ip } : {}),
        },
        body: new URLSearchParams({
          grant_type: 'password',
          client_id: client.clientId,
          username,
          password,
          scope: 'openid',
        }).toString(),
      });
      const body = (await res.json()) as Record<string, unknown>;
      // An answer without our code (an OAuth engine's own error) says its status and error instead.
      const code =
        body.error_code ?? `${res.status} ${String(body.error)}: ${String(body.error_description)}`;
      return { status: res.status, code: res.ok ? 'success' : String(code), body };
    };

    const signInPage: Stack['signInPage'] = async (username, password, o = {}) => {
      const from: Record<string, string> = o.ip ? { 'x-forwarded-for': o.ip } : {};
      const auth = new URL(`${issuer}/auth`);
      auth.search = new URLSearchParams({
        client_id: client.clientId,
        response_type: 'code',
        redirect_uri: 'https://app.example.test/callback',
        scope: 'openid',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        code_challenge_method: 'S256',
      }).toString();
      const start = await f(auth.href, { redirect: 'manual', headers: from });
      const cookie = start.headers
        .getSetCookie()
        .map((c) => c.split(';')[0])
        .join('; ');
      const page = new URL(String(start.headers.get('location')), cloud.url).href;
      const first = await f(page, { headers: { ...from, cookie } });
      const csrf = /name="csrf" value="([^"]+)"/.exec(await first.text())?.[1] ?? '';
      const post = (step: string, form: Record<string, string>) =>
        f(`${page}/${step}`, {
          method: 'POST',
          redirect: 'manual',
          headers: { ...from, cookie, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ ...form, csrf }).toString(),
        });
      await post('username', { username });
      const t0 = performance.now();
      const res = await post('password', { username, password });
      const html = res.status === 303 || res.status === 302 ? '' : await res.text();
      const ms = performance.now() - t0;
      const code = html ? (/Error code: ([a-z_]+)/.exec(html)?.[1] ?? 'unknown') : 'success';
      return { status: res.status, code, html, ms };
    };

    return {
      cloud,
      tenantId,
      issuer,
      agents,
      stateDirs,
      output: () => [...cloudLog, ...outputs, ...agents.map((a) => a.output())].join('\n'),
      passwordGrant,
      signInPage,
      signIns: async () => {
        await cloud.authenticator.flush();
        return db
          .selectFrom('signins')
          .selectAll()
          .where('tenant_id', '=', tenantId)
          .orderBy('id', 'desc')
          .execute() as Promise<Array<Record<string, unknown>>>;
      },
      firstSync: async () => {
        await waitFor('the first run to end', async () => {
          const [run] = await listSyncRuns(db, tenantId);
          return run?.status === 'succeeded';
        });
      },
      syncRun: async (mode, timeoutMs = 60_000) => {
        const runId = randomUUID();
        if (!cloud.gateway.requestSync(tenantId, runId, mode))
          throw new Error('no agent took the sync request');
        return waitFor(
          `${mode} run ${runId}`,
          async () => {
            const r = await getSyncRun(db, tenantId, runId);
            return r && r.status !== 'running' ? r : undefined;
          },
          timeoutMs,
        );
      },
      startAgent,
      stop,
    };
  } catch (err) {
    if (process.env.GATEHOUSE_DEBUG_STACK)
      process.stderr.write(`${agents.map((a) => a.output()).join('\n')}\n${cloudLog.join('')}`);
    await stop();
    throw err;
  }
};
