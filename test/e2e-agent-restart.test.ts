/**
 * The embedded shape (one cloud process, SQLite) with its only agent restarted under load: the
 * sign-ins that arrive while no agent is connected wait for it to come back (agentReconnectWaitMs)
 * instead of failing with no_agent. Real slapd, the real agent process, password grants through
 * the token endpoint. With no agent coming back, no_agent still answers, once the wait is over.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Child, spawnNode, waitFor } from './harness/children.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'example.test';
const PW = `Restart-${Math.random().toString(36).slice(2, 8)}-Pw1`;
// One user per load worker: smart lockout counts a user's concurrent sign-ins.
const USERS = ['r1', 'r2', 'r3', 'r4'];
// Generous for a loaded test machine; what a restart takes is measured and printed below.
const RECONNECT_WAIT_MS = 8000;
let slapd: SlapdInstance;
let stack: Stack;

before(async () => {
  slapd = await startSlapd({ users: USERS.map((uid) => ({ uid, password: PW })) });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
      extra: { upnAttribute: 'uid', upnDomain: DOMAIN },
    },
    expectUsers: USERS.map((u) => `${u}@${DOMAIN}`),
    cloud: { agentReconnectWaitMs: RECONNECT_WAIT_MS, agentTimeoutMs: 15_000 },
  });
});

after(async () => {
  await stack?.stop();
  await slapd?.stop();
});

interface Attempt {
  startedAt: number;
  endedAt: number;
  code: string;
}

const startLoad = () => {
  const results: Attempt[] = [];
  let running = true;
  const loops = USERS.map(async (u) => {
    while (running) {
      const startedAt = Date.now();
      const { code } = await stack.passwordGrant(`${u}@${DOMAIN}`, PW);
      results.push({ startedAt, endedAt: Date.now(), code });
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return results;
    },
  };
};

const ready = () => stack.cloud.gateway.connections().filter((c) => c.ready).length;
/** The same agent (same state directory, keys and id) started again, as a service manager would. */
const startAgain = (old: Child): Child => {
  const [, file, ...args] = old.proc.spawnargs;
  const child = spawnNode(old.name, file!, args);
  stack.agents[stack.agents.indexOf(old)] = child;
  return child;
};
const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : 0;
};

const restartUnderLoad = async (how: 'SIGTERM' | 'SIGKILL') => {
  const load = startLoad();
  await new Promise((r) => setTimeout(r, 1000));
  const old = stack.agents[0]!;
  const goneAt = Date.now();
  if (how === 'SIGTERM') await old.stop();
  else {
    process.kill(-old.pid, 'SIGKILL');
    await old.exited;
  }
  await waitFor('the agent gone', () => ready() === 0, 10_000);
  startAgain(old);
  await waitFor('the agent back', () => ready() === 1, 30_000);
  const backAt = Date.now();
  await new Promise((r) => setTimeout(r, 1000));
  const results = await load.stop();
  const held = results
    .filter((r) => r.startedAt >= goneAt && r.startedAt < backAt)
    .map((r) => r.endedAt - r.startedAt);
  process.stdout.write(
    `# agent ${how} + restart: back after ${backAt - goneAt} ms; ${results.length} sign-ins; ` +
      `held (${held.length}): p50 ${pct(held, 0.5)} ms, max ${pct(held, 1)} ms\n`,
  );
  return { results, held };
};

test('agent restarted (SIGTERM, start again) under load: no sign-in fails', async () => {
  const { results, held } = await restartUnderLoad('SIGTERM');
  assert.ok(results.length > 20, `only ${results.length} sign-ins ran`);
  assert.deepEqual(
    results.filter((r) => r.code !== 'success'),
    [],
  );
  assert.ok(held.length > 0, 'some sign-ins arrived while no agent was connected');
});

test('agent killed (kill -9, start again) under load: no sign-in fails', async () => {
  const { results, held } = await restartUnderLoad('SIGKILL');
  assert.deepEqual(
    results.filter((r) => r.code !== 'success'),
    [],
  );
  assert.ok(held.length > 0, 'some sign-ins arrived while no agent was connected');
  assert.match(stack.output(), /"msg":"agent back; held requests sent"/);
});

test('agent gone for good: no_agent once the wait is over, then at once', async () => {
  const old = stack.agents[0]!;
  await old.stop();
  await waitFor('the agent gone', () => ready() === 0, 10_000);
  const goneAt = Date.now();
  const first = await stack.passwordGrant(`r1@${DOMAIN}`, PW);
  assert.equal(first.code, 'no_agent');
  const waited = Date.now() - goneAt;
  assert.ok(waited > RECONNECT_WAIT_MS - 1500 && waited < RECONNECT_WAIT_MS + 2000, `waited ${waited} ms`);
  const t0 = Date.now();
  assert.equal((await stack.passwordGrant(`r2@${DOMAIN}`, PW)).code, 'no_agent');
  assert.ok(Date.now() - t0 < 1000, `${Date.now() - t0} ms`);
  // An infrastructure failure never counts against the user: the right password still works.
  startAgain(old);
  await waitFor('the agent back', () => ready() === 1, 30_000);
  assert.equal((await stack.passwordGrant(`r1@${DOMAIN}`, PW)).code, 'success');
});
