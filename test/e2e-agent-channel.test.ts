/**
 * A refused agent stops instead of reconnecting forever: deleted while connected (error frame
 * certificate_rejected, then close 1008), and started again with the deleted certificate (HTTP 401
 * on the upgrade), the `run` process exits 3 with the catalog code on stderr, after one attempt.
 * And SIGTERM: the agent tells the cloud it is draining (a protocol frame) before it closes, and
 * exits 0. No directory is needed: the agent connects while its directory is down.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { register } from '../apps/agent/src/register.ts';
import { type RunningCloud, startCloud } from '../apps/cloud/src/server.ts';
import { deleteAgent } from '../apps/cloud/src/store/agents.ts';
import { createRegistrationToken } from '../apps/cloud/src/store/registration-tokens.ts';
import { createTenant } from '../apps/cloud/src/store/tenants.ts';
import { AGENT_MAIN, spawnNode, waitFor } from './harness/children.ts';

const EXIT_CERTIFICATE_REFUSED = 3;

let dir: string;
let cloud: RunningCloud;
let tenantId: string;
const cloudLog: string[] = [];

const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_')));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-refused-'));
  cloud = await startCloud(
    { dataDir: join(dir, 'cloud'), port: 0, gatewayPort: 0, logLevel: 'info', drainDelayMs: 0 },
    { env: {}, logDestination: { write: (line: string) => void cloudLog.push(line) } },
  );
  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'Refused',
    domain: 'refused.test',
    admin: { upn: 'admin@refused.test', password: `Admin-${Math.random().toString(36).slice(2)}-1!` },
  }));
});

after(async () => {
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const registerAgent = async (name: string) => {
  const stateDir = join(dir, name);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const { token } = await createRegistrationToken(cloud.ctx.db, tenantId, name, 600, Date.now());
  const caPem = readFileSync(join(dir, 'cloud', 'tls', 'ca.pem'), 'utf8');
  const { agentId } = await register({ cloud: cloud.url, caPem, stateDir, token });
  writeFileSync(join(stateDir, 'bind-password'), 'unused', { mode: 0o600 });
  writeFileSync(
    join(stateDir, 'config.json'),
    JSON.stringify({
      directory: {
        kind: 'openldap',
        urls: ['ldap://127.0.0.1:9'],
        bindDn: 'cn=svc,dc=refused,dc=test',
        bindPasswordFile: join(stateDir, 'bind-password'),
        baseDns: ['dc=refused,dc=test'],
      },
      logLevel: 'info',
    }),
  );
  return { stateDir, agentId };
};

const run = (stateDir: string) => spawnNode('agent', AGENT_MAIN, ['run', '--state-dir', stateDir], { env });

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, no) => setTimeout(() => no(new Error(`${what}: still running`)), ms)),
  ]);

test('an agent deleted while connected exits 3 instead of reconnecting', async () => {
  const { stateDir, agentId } = await registerAgent('deleted-live');
  const agent = run(stateDir);
  try {
    await waitFor('the agent to connect', () => {
      if (!agent.running()) throw new Error(`agent exited: ${agent.output()}`);
      return cloud.gateway.connections().some((c) => c.agentId === agentId && c.ready);
    });
    await deleteAgent(cloud.ctx.db, tenantId, agentId);
    assert.equal((await cloud.gateway.revokeDeleted({ tenantId, agentId })).closed, 1);
    assert.equal(await within(agent.exited, 10_000, 'the refused agent'), EXIT_CERTIFICATE_REFUSED);
    const out = agent.output();
    assert.match(out, /^certificate_rejected: /m, 'the catalog code on stderr');
    assert.match(out, /register it again/);
    assert.doesNotMatch(out, /"msg":"reconnecting"/);
  } finally {
    await agent.stop();
  }

  // Started again with the deleted certificate: refused at the upgrade, one attempt, same code.
  const again = run(stateDir);
  try {
    assert.equal(await within(again.exited, 10_000, 'the restarted agent'), EXIT_CERTIFICATE_REFUSED);
    const out = again.output();
    assert.match(out, /"status":401/);
    assert.match(out, /^certificate_rejected: /m);
    assert.doesNotMatch(out, /"msg":"reconnecting"/);
  } finally {
    await again.stop();
  }
});

test('SIGTERM: the agent sends draining, then closes, and exits 0', async () => {
  const { stateDir, agentId } = await registerAgent('drains');
  const agent = run(stateDir);
  await waitFor('the agent to connect', () => {
    if (!agent.running()) throw new Error(`agent exited: ${agent.output()}`);
    return cloud.gateway.connections().some((c) => c.agentId === agentId && c.ready);
  });
  await agent.stop(10_000);
  assert.equal(await agent.exited, 0);
  const mine = () =>
    cloudLog
      .map((l) => JSON.parse(l) as { agentId?: string; msg: string })
      .filter((l) => l.agentId === agentId)
      .map((l) => l.msg);
  await waitFor('the cloud to see the close', () => mine().includes('agent disconnected'));
  const seen = mine();
  assert.ok(seen.includes('agent draining'), `the cloud heard the draining frame: ${seen.join(', ')}`);
  assert.ok(seen.indexOf('agent draining') < seen.indexOf('agent disconnected'));
});
