/**
 * `npm run demo`: the whole product on this machine, as the quick start describes it. A private
 * OpenLDAP directory with demo users, the cloud, a tenant with a verified domain and a cloud-only
 * administrator, an agent registered with a one-time token, pass-through authentication on, the
 * first directory sync, and the sample app. Ctrl-C stops everything; .data/demo (logs, state)
 * stays for a look and is wiped at the next start.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import * as oidc from 'openid-client';
import { type Child, ROOT, registerAgentCli, runNode, spawnNode, waitFor } from '../test/harness/children.ts';
import { pinnedFetch } from '../test/harness/pinned-fetch.ts';
import { type SlapdInstance, startSlapd } from '../test/harness/slapd.ts';
import { ensureSystem } from './ensure-system.ts';

const DOMAIN = 'contoso.example';
const USER_PASSWORD = 'Demo-Passw0rd!';
const USERS = [
  { uid: 'alice', cn: 'Alice Anders' },
  { uid: 'bob', cn: 'Bob Brown' },
  { uid: 'carol', cn: 'Carol Chen' },
];
const PORT = Number(process.env.GATEHOUSE_CLOUD_PORT ?? 8443);
const GATEWAY_PORT = Number(process.env.GATEHOUSE_CLOUD_GATEWAY_PORT ?? 8444);
const APP_PORT = Number(process.env.SAMPLE_APP_PORT ?? 3000);

const DATA = join(ROOT, '.data', 'demo');
const LOGS = join(DATA, 'logs');
const CLOUD_DIR = join(DATA, 'cloud');
const AGENT_DIR = join(DATA, 'agent');
const CA_FILE = join(CLOUD_DIR, 'tls', 'ca.pem');
const PUBLIC_URL = `https://localhost:${PORT}`;
const APP_URL = `http://127.0.0.1:${APP_PORT}`;

const cloudEnv: NodeJS.ProcessEnv = {
  ...process.env,
  GATEHOUSE_CLOUD_DATA_DIR: CLOUD_DIR,
  GATEHOUSE_CLOUD_PORT: String(PORT),
  GATEHOUSE_CLOUD_GATEWAY_PORT: String(GATEWAY_PORT),
  GATEHOUSE_CLOUD_PUBLIC_URL: PUBLIC_URL,
};

const step = (msg: string) => process.stdout.write(`- ${msg}\n`);
const fail = (msg: string): never => {
  throw new Error(msg);
};

const children: Child[] = [];
let slapd: SlapdInstance | undefined;
let stopping = false;

const stopAll = async () => {
  stopping = true;
  await Promise.all(children.reverse().map((c) => c.stop()));
  await slapd?.stop();
};

const portFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });

/** The operator CLI, against the same data directory as the running cloud. */
const gatehouse = async (...args: string[]): Promise<Record<string, unknown>> => {
  const r = await runNode(join(ROOT, 'apps/cloud/src/cli.ts'), [...args, '--json'], { env: cloudEnv });
  if (r.code !== 0)
    fail(`gatehouse ${args.slice(0, 2).join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
};

/** Starts a long-running child with its output in LOGS/NAME.log; an early exit is reported. */
const background = (name: string, file: string, args: string[], env?: NodeJS.ProcessEnv): Child => {
  const logFile = join(LOGS, `${name}.log`);
  const child = spawnNode(name, join(ROOT, file), args, { env, logFile });
  children.push(child);
  void child.exited.then((code) => {
    if (stopping) return;
    process.stderr.write(`\n${name} exited with status ${code}; its log is ${logFile}:\n`);
    process.stderr.write(`${child.output().split('\n').slice(-15).join('\n')}\n`);
    void stopAll().then(() => process.exit(1));
  });
  return child;
};

const main = async () => {
  process.stdout.write('Gatehouse demo\n\n');
  const busy: string[] = [];
  for (const [port, what, env] of [
    [PORT, 'the cloud (HTTPS)', 'GATEHOUSE_CLOUD_PORT'],
    [GATEWAY_PORT, 'the agent gateway', 'GATEHOUSE_CLOUD_GATEWAY_PORT'],
    [APP_PORT, 'the sample app', 'SAMPLE_APP_PORT'],
  ] as const) {
    if (!(await portFree(port)))
      busy.push(`  port ${port} (${what}) is in use; free it or set ${env}=ANOTHER_PORT`);
  }
  if (busy.length) fail(`cannot start:\n${busy.join('\n')}`);

  step('checking system packages');
  if ((await ensureSystem()) !== 0) fail('system packages are missing (see above)');

  rmSync(DATA, { recursive: true, force: true });
  mkdirSync(LOGS, { recursive: true, mode: 0o700 });
  mkdirSync(AGENT_DIR, { recursive: true, mode: 0o700 });

  step('starting the OpenLDAP directory');
  slapd = await startSlapd({
    suffix: 'dc=contoso,dc=example',
    users: USERS.map((u) => ({ ...u, password: USER_PASSWORD, mail: `${u.uid}@${DOMAIN}` })),
  });

  step(`starting the cloud on ${PUBLIC_URL} (agents: port ${GATEWAY_PORT})`);
  background('cloud', 'apps/cloud/src/main.ts', [], cloudEnv);
  const ca = await waitFor('the cloud CA', () => readFileSync(CA_FILE, 'utf8'), 30_000);
  const cloudFetch = pinnedFetch(ca);
  await waitFor('the cloud to answer', async () => (await cloudFetch(`${PUBLIC_URL}/healthz`)).ok, 30_000);

  step(`creating the tenant, domain ${DOMAIN} and its cloud-only administrator`);
  const adminUpn = `admin@${DOMAIN}`;
  const adminPassword = `${randomBytes(12).toString('base64url')}!9a`;
  const adminFile = join(DATA, 'admin-password');
  writeFileSync(adminFile, `${adminPassword}\n`, { mode: 0o600 });
  const tenant = await gatehouse(
    'tenant',
    'create',
    '--name',
    'Contoso (demo)',
    '--domain',
    DOMAIN,
    '--admin-upn',
    adminUpn,
    '--admin-password-file',
    adminFile,
    '--admin-display-name',
    'Demo Administrator',
  );
  const tenantId = String(tenant.tenantId ?? fail('tenant create gave no tenantId'));
  await gatehouse('domain', 'verify', '--tenant', tenantId, '--name', DOMAIN, '--force');
  const app = await gatehouse(
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Sample app',
    '--redirect-uri',
    `${APP_URL}/callback`,
    '--public',
  );
  const legacy = await gatehouse(
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Legacy mail client',
    '--redirect-uri',
    `${APP_URL}/unused`,
    '--public',
    '--grant-type',
    'password',
  );
  const issuer = String(app.issuer ?? `${PUBLIC_URL}/${tenantId}/v2.0`);

  step('registering an agent with a one-time token');
  const { token } = (await gatehouse('token', 'create', '--tenant', tenantId)) as { token: string };
  const bindFile = join(AGENT_DIR, 'bind-password');
  writeFileSync(bindFile, slapd.servicePassword, { mode: 0o600 });
  writeFileSync(
    join(AGENT_DIR, 'config.json'),
    `${JSON.stringify(
      {
        directory: {
          kind: 'openldap',
          urls: [slapd.url],
          bindDn: slapd.serviceDn,
          bindPasswordFile: bindFile,
          baseDns: [slapd.peopleDn],
        },
        sync: { intervalMinutes: 1 },
      },
      null,
      2,
    )}\n`,
    { mode: 0o600 },
  );
  const agentArgs = ['--state-dir', AGENT_DIR];
  const reg = await registerAgentCli({ cloudUrl: PUBLIC_URL, caFile: CA_FILE, token, stateDir: AGENT_DIR });
  if (reg.code !== 0) fail(`agent registration failed: ${reg.stderr.trim() || reg.stdout.trim()}`);
  chmodSync(AGENT_DIR, 0o700);

  step('starting the agent (outbound connection only)');
  background('agent', 'apps/agent/src/main.ts', ['run', ...agentArgs]);
  await waitFor(
    'the agent to be active',
    async () => {
      const agents = (await gatehouse('agents', 'list', '--tenant', tenantId)) as unknown as {
        status: string;
      }[];
      return agents.some((a) => a.status === 'active');
    },
    60_000,
    500,
  );

  step('enabling pass-through authentication and the password grant');
  await gatehouse('settings', 'set', '--tenant', tenantId, '--pta', 'on', '--legacy-auth', 'on');

  step('waiting for the first directory sync');
  await waitFor(
    'the demo users to be synced',
    async () => {
      const page = (await gatehouse('user', 'list', '--tenant', tenantId)) as { users?: { upn: string }[] };
      const upns = new Set((page.users ?? []).map((u) => u.upn.toLowerCase()));
      return USERS.every((u) => upns.has(`${u.uid}@${DOMAIN}`));
    },
    60_000,
    500,
  );

  step(`starting the sample app on ${APP_URL}`);
  const appClientId = String(app.clientId ?? fail('client create gave no clientId'));
  background('sample-app', 'apps/sample-app/src/main.ts', [
    '--issuer',
    issuer,
    '--client-id',
    appClientId,
    '--ca-file',
    CA_FILE,
    '--port',
    String(APP_PORT),
  ]);
  await waitFor('the sample app', async () => (await fetch(`${APP_URL}/healthz`)).ok, 30_000);

  step('checking a pass-through sign-in (password grant for alice)');
  const legacyClientId = String(legacy.clientId ?? fail('client create gave no clientId'));
  const rp = await oidc.discovery(new URL(issuer), legacyClientId, undefined, oidc.None(), {
    [oidc.customFetch]: cloudFetch as oidc.CustomFetch,
  });
  const tokens = await oidc.genericGrantRequest(rp, 'password', {
    username: `alice@${DOMAIN}`,
    password: USER_PASSWORD,
    scope: 'openid profile email',
  });
  const claims = tokens.claims();
  if (!claims?.sub) fail('the password grant gave no ID token');
  const tokenEndpoint = rp.serverMetadata().token_endpoint;

  process.stdout.write(`
Gatehouse is running.

  Sample app:      ${APP_URL}   (click "Sign in")
  Directory users: ${USERS.map((u) => `${u.uid}@${DOMAIN}`).join(', ')}
  Their password:  ${USER_PASSWORD}   (checked on premises by the agent, never stored in the cloud)
  Administrator:   ${adminUpn}   password in ${adminFile}   (cloud-only: works with no agent)
  Admin center:    ${PUBLIC_URL}/${tenantId}/admin/   (sign in as the administrator)
  Tenant:          ${tenantId}
  Issuer:          ${issuer}
  Service CA:      ${CA_FILE}
  Logs:            ${LOGS}

Password grant (legacy clients), e.g.:

  curl --cacert ${CA_FILE} ${tokenEndpoint} \\
    -d grant_type=password -d client_id=${legacyClientId} -d scope=openid \\
    -d username=bob@${DOMAIN} --data-urlencode 'password=${USER_PASSWORD}'

Operator CLI against this demo:

  GATEHOUSE_CLOUD_DATA_DIR=${CLOUD_DIR} npm run gatehouse -- signins list --tenant ${tenantId}

Press Ctrl-C to stop everything.
`);
};

const shutdown = (signal: string) => {
  if (stopping) return;
  process.stdout.write(`\n${signal}: stopping the sample app, the agent, the cloud and the directory...\n`);
  void stopAll().then(() => {
    process.stdout.write(`stopped. State and logs are kept in ${DATA}\n`);
    process.exit(0);
  });
};
process.once('SIGINT', () => shutdown('SIGINT'));
process.once('SIGTERM', () => shutdown('SIGTERM'));

try {
  await main();
} catch (err) {
  process.stderr.write(`\ndemo: ${(err as Error).message}\n`);
  if ((err as Error).cause) process.stderr.write(`  cause: ${String((err as Error).cause)}\n`);
  for (const c of children) {
    process.stderr.write(`\n--- last lines of ${c.name} (${join(LOGS, `${c.name}.log`)}):\n`);
    process.stderr.write(`${c.output().split('\n').slice(-10).join('\n')}\n`);
  }
  await stopAll();
  process.exit(1);
}
