/**
 * Deleting an agent, scale-out shape: two cloud nodes on PostgreSQL and NATS, both agents on node
 * B, sign-ins through both nodes (node A has no agent, so it seals to every agent's key and relays).
 * `gatehouse agents delete`, run as its own process with the nodes' settings, returns only after
 * node B closed the connection; no sign-in started afterwards, on either node, is served by the
 * deleted agent, and none fails. The same through the admin API of node A, which holds none of the
 * agents. Heartbeats stay at 10 s, so the old recheck would not do it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { ADMIN_CLIENT_ID } from '../apps/cloud/src/admin/index.ts';
import { startCloud } from '../apps/cloud/src/server.ts';
import { createCloudUser } from '../apps/cloud/src/store/users.ts';
import { ROOT, runNode, waitFor } from './harness/children.ts';
import {
  type AgentProc,
  type CloudNode,
  type ClusterSettings,
  cli,
  clusterEnv,
  natsAvailable,
  newSecretKey,
  registerAgentProc,
  runAgentProc,
  startNode,
} from './harness/cluster.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { createTempDatabase, type TempDatabase } from './harness/postgres.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';

const DOMAIN = 'example.test';
const PASSWORD = `Del-${Math.random().toString(36).slice(2, 10)}-Pw9`;
const USERS = ['u1', 'u2', 'u3', 'u4'];

const pgDb = await createTempDatabase();
const natsUp = await natsAvailable();
const skip = !pgDb || !natsUp ? 'PostgreSQL or NATS is not running here' : false;

const dir = mkdtempSync(join(tmpdir(), 'gh-del-'));
const secretKey = newSecretKey();
let settings: ClusterSettings;
let slapd: SlapdInstance;
let db: TempDatabase;
let nodeA: CloudNode;
let nodeB: CloudNode;
const agents: AgentProc[] = [];
let tenantId: string;
let clientId: string;
let f: ReturnType<typeof pinnedFetch>;

const sql = async <T>(q: string, params: unknown[] = []): Promise<T[]> => {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    return (await c.query(q, params)).rows as T[];
  } finally {
    await c.end();
  }
};
const env = () => ({ ...clusterEnv(settings, secretKey), GATEHOUSE_CLOUD_PUBLIC_URL: nodeA.url });

before(async () => {
  if (skip) return;
  db = pgDb!;
  settings = {
    dir,
    databaseUrl: db.url,
    // Both agents stay on node B (node A relays): rebalancing, which would spread them, is off here.
    extra: { GATEHOUSE_CLOUD_LOG_LEVEL: 'debug', GATEHOUSE_CLOUD_REBALANCE_MS: '0' },
  };
  slapd = await startSlapd({
    users: USERS.map((uid) => ({ uid, cn: uid, mail: `${uid}@${DOMAIN}`, password: PASSWORD })),
  });
  writeFileSync(join(dir, 'bind-password'), slapd.servicePassword, { mode: 0o600 });
  nodeA = await startNode(settings, secretKey, 'node-a');
  nodeB = await startNode(settings, secretKey, 'node-b');
  f = pinnedFetch(readFileSync(join(dir, 'cloud', 'tls', 'ca.pem'), 'utf8'));
  const adminFile = join(dir, 'admin-password');
  writeFileSync(adminFile, `Admin-${PASSWORD}`, { mode: 0o600 });
  const t = await cli(
    env(),
    ...['tenant', 'create', '--name', 'Del', '--domain', DOMAIN, '--admin-upn', `admin@${DOMAIN}`],
    ...['--admin-password-file', adminFile],
  );
  tenantId = String(t.tenantId);
  await cli(env(), 'domain', 'verify', '--tenant', tenantId, '--name', DOMAIN, '--force');
  const client = await cli(
    env(),
    ...[
      'client',
      'create',
      '--tenant',
      tenantId,
      '--name',
      'Legacy',
      '--redirect-uri',
      'https://app.test/cb',
    ],
    ...['--public', '--grant-type', 'password'],
  );
  clientId = String(client.clientId);
  await cli(env(), 'settings', 'set', '--tenant', tenantId, '--legacy-auth', 'on');
  for (let i = 1; i <= 2; i++) {
    const token = String((await cli(env(), 'token', 'create', '--tenant', tenantId)).token);
    const stateDir = join(dir, `agent-${i}`);
    // Registered through node B, and only told about node B: both agents live there.
    await registerAgentProc(`agent-${i}`, stateDir, nodeB, token, {
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPasswordFile: join(dir, 'bind-password'),
        baseDns: [slapd.peopleDn],
      },
      sync: { intervalMinutes: 60 },
    });
    agents.push(runAgentProc(`agent-${i}`, stateDir));
  }
  // A third one, for the admin API test.
  const token = String((await cli(env(), 'token', 'create', '--tenant', tenantId)).token);
  await registerAgentProc('agent-3', join(dir, 'agent-3'), nodeB, token, {
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPasswordFile: join(dir, 'bind-password'),
      baseDns: [slapd.peopleDn],
    },
    sync: { intervalMinutes: 60 },
  });
  await waitFor(
    'two agents on node B',
    () => nodeB.child.output().split('"agent connected"').length - 1 >= 2,
  );
  agents.push(runAgentProc('agent-3', join(dir, 'agent-3')));
  await waitFor(
    'three agents on node B',
    () => nodeB.child.output().split('"agent connected"').length - 1 >= 3,
  );
  await cli(env(), 'settings', 'set', '--tenant', tenantId, '--pta', 'on');
  await waitFor(
    'the first sync',
    async () => (await sql('select upn from users')).length >= USERS.length + 1,
  );
});

after(async () => {
  for (const a of agents) await a.child.stop();
  await nodeA?.child.stop();
  await nodeB?.child.stop();
  await slapd?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

const grant = async (node: CloudNode, user: string): Promise<string> => {
  const res = await f(`${node.url}/${tenantId}/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: clientId,
      username: `${user}@${DOMAIN}`,
      password: PASSWORD,
      scope: 'openid',
    }).toString(),
  });
  const body = (await res.json()) as Record<string, unknown>;
  return res.ok ? 'success' : String(body.error_code);
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Under sign-in load through both nodes: `remove` deletes the agent; then nothing goes to it. */
const deleteUnderLoad = async (
  remove: (victim: string) => Promise<Record<string, unknown>>,
): Promise<{ victim: string; returnedAt: number; answer: Record<string, unknown> }> => {
  const ids = (
    await sql<{ id: string }>('select id from agents where deleted_at is null order by created_at')
  ).map((r) => r.id);
  const [victim, survivor] = ids;
  assert.ok(victim && survivor);
  const codes: string[] = [];
  let running = true;
  const since = Date.now();
  const loops = USERS.map(async (u, i) => {
    while (running) codes.push(await grant(i % 2 === 0 ? nodeA : nodeB, u));
  });
  let answer: Record<string, unknown>;
  let returnedAt: number;
  try {
    // Every live agent serves before the delete (node A seals to every key).
    await waitFor('every agent serving', async () => {
      const rows = await sql<{ agent_id: string }>(
        'select distinct agent_id from signins where agent_id is not null and at >= $1',
        [since],
      );
      return rows.length === ids.length;
    });
    answer = await remove(victim);
    returnedAt = Date.now();
    await sleep(3_000);
  } finally {
    running = false;
    await Promise.all(loops);
  }
  const late = await sql<{ request_id: string }>(
    'select request_id from signins where agent_id = $1 and at >= $2',
    [victim, returnedAt],
  );
  assert.deepEqual(late, [], 'no sign-in started after the delete went to the deleted agent');
  const served = await sql<{ n: string }>('select count(*) n from signins where agent_id = $1 and at >= $2', [
    survivor,
    returnedAt,
  ]);
  assert.ok(Number(served[0]!.n) >= 10, 'sign-ins kept coming, through the other agent');
  assert.deepEqual(
    codes.filter((c) => c !== 'success'),
    [],
    'every sign-in succeeded',
  );
  return { victim, returnedAt, answer };
};

test('agents delete (CLI) closes the agent on the node holding it before it returns', { skip }, async () => {
  const { victim, returnedAt, answer } = await deleteUnderLoad(async (victim) => {
    const r = await runNode(
      join(ROOT, 'apps/cloud/src/cli.ts'),
      ['agents', 'delete', '--tenant', tenantId, '--id', victim, '--json'],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  });
  assert.deepEqual({ closed: answer.connectionsClosed, nodes: answer.nodes }, { closed: 1, nodes: 1 });
  // Node B logged the close before the CLI returned.
  const closedLine = nodeB.child
    .output()
    .split('\n')
    .find((l) => l.includes('deleted agent disconnected') && l.includes(victim));
  assert.ok(closedLine, 'node B closed the deleted agent');
  assert.ok(Number((JSON.parse(closedLine) as { time: number }).time) <= returnedAt);
});

test('DELETE /agents/:id on node A closes the agent node B holds before it answers', { skip }, async (t) => {
  // An access token of the tenant's provider, stored in the shared database like any other: a
  // third, in-process node of the same cluster mints it (the nodes are child processes).
  const minter = await startCloud(
    {},
    {
      env: {
        ...env(),
        GATEHOUSE_CLOUD_NODE_ID: 'minter',
        GATEHOUSE_CLOUD_PORT: '0',
        GATEHOUSE_CLOUD_GATEWAY_PORT: '0',
        GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'minter'),
        GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
      },
    },
  );
  t.after(() => minter.stop());
  const admin = await createCloudUser(minter.ctx.db, tenantId, {
    upn: `hybrid@${DOMAIN}`,
    password: `Hybrid-${PASSWORD}`,
    roles: ['hybrid_identity_admin'],
  });
  const oidc = (await minter.oidc.forTenant(tenantId))!;
  const client = await oidc.provider.Client.find(ADMIN_CLIENT_ID);
  const grant = new oidc.provider.Grant({ accountId: admin.id, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid profile');
  const token = await new oidc.provider.AccessToken({
    accountId: admin.id,
    client: client!,
    grantId: await grant.save(),
    gty: 'authorization_code',
    scope: 'openid profile',
  }).save();
  const { victim, returnedAt, answer } = await deleteUnderLoad(async (victim) => {
    const res = await f(`${nodeA.url}/${tenantId}/api/v1/agents/${victim}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as Record<string, unknown>;
  });
  assert.equal(answer.connectionsClosed, 1, 'node A reports the connection node B closed');
  const closedLine = nodeB.child
    .output()
    .split('\n')
    .find((l) => l.includes('deleted agent disconnected') && l.includes(victim));
  assert.ok(closedLine, 'node B closed the deleted agent');
  assert.ok(Number((JSON.parse(closedLine) as { time: number }).time) <= returnedAt);
});
