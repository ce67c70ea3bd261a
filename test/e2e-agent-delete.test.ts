/**
 * Deleting an agent, embedded shape (one cloud on SQLite): under a steady stream of password
 * grants, the agent is deleted through the operator CLI (another process on the same data
 * directory) and through the admin API. When either returns, the agent's connection is already
 * closed and no sign-in started afterwards is served by it; its in-flight sign-ins go to the other
 * agent, so none fails. The heartbeat stays at its 10 s default: the old recheck at the next
 * heartbeat would let the deleted agent serve for seconds.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ADMIN_CLIENT_ID } from '../apps/cloud/src/admin/index.ts';
import { createCloudUser } from '../apps/cloud/src/store/users.ts';
import { ROOT, runNode } from './harness/children.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'example.test';
const PASSWORD = `Del-${Math.random().toString(36).slice(2, 10)}-Pw9`;
const USERS = ['u1', 'u2', 'u3', 'u4'];

let slapd: SlapdInstance;
let stack: Stack;

before(async () => {
  slapd = await startSlapd({
    users: USERS.map((uid) => ({ uid, cn: uid, mail: `${uid}@${DOMAIN}`, password: PASSWORD })),
  });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
    },
    expectUsers: USERS.map((u) => `${u}@${DOMAIN}`),
    agents: 2,
  });
});

after(async () => {
  await stack?.stop();
  await slapd?.stop();
});

/** Password grants from `workers` loops, one user each (lockout counts a user's concurrent tries). */
const startLoad = (workers = 4) => {
  const codes: string[] = [];
  let running = true;
  const loops = USERS.slice(0, workers).map(async (u) => {
    while (running) codes.push((await stack.passwordGrant(`${u}@${DOMAIN}`, PASSWORD)).code);
  });
  return {
    codes,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return codes;
    },
  };
};

const readyAgents = () => stack.cloud.gateway.connections().filter((c) => c.ready);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deletes one of two connected agents with `del` under load and checks what followed. */
const deleteUnderLoad = async (del: (agentId: string) => Promise<Record<string, unknown>>) => {
  if (readyAgents().length < 2) await stack.startAgent();
  const [victim, survivor] = readyAgents().map((c) => c.agentId);
  assert.ok(victim && survivor && victim !== survivor);
  const load = startLoad();
  await sleep(1_500);
  const answer = await del(victim);
  const returnedAt = Date.now();
  // Nothing awaited since the delete answered: the connection was closed before it did.
  assert.deepEqual(
    stack.cloud.gateway.connections().filter((c) => c.agentId === victim),
    [],
    'the deleted agent has no connection once the delete returned',
  );
  assert.equal(answer.connectionsClosed, 1);
  await sleep(2_500);
  const codes = await load.stop();
  const rows = await stack.signIns();
  const after = rows.filter((r) => Number(r.at) >= returnedAt);
  assert.ok(after.length >= 10, `sign-ins kept coming after the delete (${after.length})`);
  assert.deepEqual(
    after.filter((r) => r.agent_id === victim).map((r) => r.request_id),
    [],
    'no sign-in started after the delete went to the deleted agent',
  );
  assert.ok(after.every((r) => r.agent_id === survivor));
  const failed = codes.filter((c) => c !== 'success');
  // What the cloud logged at warn or above, so a rare failure here says why.
  const trouble = failed.length
    ? stack
        .output()
        .split('\n')
        .filter((l) => /"level":(40|50|60)/.test(l))
        .slice(-20)
        .join('\n')
    : '';
  assert.deepEqual(failed, [], `every sign-in succeeded: the deleted agent held none\n${trouble}`);
  return victim;
};

test('agents delete (CLI, another process) closes the connection before it returns', async () => {
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_CLOUD_'))),
    GATEHOUSE_CLOUD_DATA_DIR: stack.cloud.ctx.config.dataDir,
  };
  let text = '';
  const victim = await deleteUnderLoad(async (agentId) => {
    const r = await runNode(
      join(ROOT, 'apps/cloud/src/cli.ts'),
      ['agents', 'delete', '--tenant', stack.tenantId, '--id', agentId, '--json'],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  });
  // The plain-text answer says what happened, not what will happen at the next heartbeat.
  const again = await runNode(
    join(ROOT, 'apps/cloud/src/cli.ts'),
    ['agents', 'delete', '--tenant', stack.tenantId, '--id', victim],
    { env },
  );
  assert.equal(again.code, 1, 'an agent is deleted once');
  const survivor = readyAgents()[0]!.agentId;
  await stack.startAgent();
  const r = await runNode(
    join(ROOT, 'apps/cloud/src/cli.ts'),
    ['agents', 'delete', '--tenant', stack.tenantId, '--id', survivor],
    { env },
  );
  text = r.stdout;
  assert.match(text, /its 1 live connection\(s\) were closed before this returned/);
});

test('DELETE /agents/:id (admin API) closes the connection before it answers', async () => {
  const { cloud, tenantId } = stack;
  const admin = await createCloudUser(cloud.ctx.db, tenantId, {
    upn: `hybrid@${DOMAIN}`,
    password: `Hybrid-${PASSWORD}`,
    roles: ['hybrid_identity_admin'],
  });
  const t = (await cloud.oidc.forTenant(tenantId))!;
  const client = await t.provider.Client.find(ADMIN_CLIENT_ID);
  const grant = new t.provider.Grant({ accountId: admin.id, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid profile');
  const grantId = await grant.save();
  const token = await new t.provider.AccessToken({
    accountId: admin.id,
    client: client!,
    grantId,
    gty: 'authorization_code',
    scope: 'openid profile',
  }).save();
  const f = pinnedFetch(cloud.caCert);
  await deleteUnderLoad(async (agentId) => {
    const res = await f(`${cloud.url}/${tenantId}/api/v1/agents/${agentId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 200);
    return (await res.json()) as Record<string, unknown>;
  });
});
