/**
 * The dispatcher over real agent connections: the sealed password opens only with the agent's
 * key and only for this request, failures become outcomes quickly, and a request whose agent
 * dies mid-flight completes on another agent within its deadline. A request for a tenant whose
 * agent left moments ago waits for it to come back; with none seen recently, no_agent at once.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { aad, type CloudMessage, hpkeOpen, type Validate } from '@gatehouse/protocol';
import type { CleartextValidation } from '../src/signin/types.ts';
import { deleteAgent } from '../src/store/agents.ts';
import { createTenant } from '../src/store/tenants.ts';
import {
  ADMIN_PASSWORD,
  type AgentCredentials,
  connectAgent,
  type Env,
  registerAgent,
  ScriptedAgent,
  startEnv,
  waitFor,
} from './gateway-harness.ts';

const CANARY = 'Canary-Pa55word-7f3a9c';

const RECONNECT_WAIT_MS = 1500;
const MAX_HELD = 3;

let env: Env;
before(async () => {
  env = await startEnv({ agentReconnectWaitMs: RECONNECT_WAIT_MS }, { maxInFlight: 2, maxHeld: MAX_HELD });
});
after(() => env.close());

let seq = 0;
const request = (over: Partial<Omit<CleartextValidation, 'kind'>> = {}): CleartextValidation => ({
  kind: 'cleartext',
  tenantId: env.tenantId,
  requestId: `req-${++seq}`,
  user: { upn: 'Alice@Contoso.example', dn: 'CN=Alice,OU=Staff,DC=contoso,DC=example', anchor: 'guid-alice' },
  password: CANARY,
  deadline: Date.now() + 2000,
  ...over,
});

const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64url'));
type Bound = Pick<Validate, 'id' | 'deadline'> & { tenantId: string; user: { upn: string } };
const open = (creds: AgentCredentials, v: Validate, aadFor: Bound = v) =>
  new TextDecoder().decode(
    hpkeOpen(
      creds.hpke.privateKey,
      b64(v.enc),
      b64(v.ct),
      aad(aadFor.tenantId, aadFor.id, aadFor.user.upn, aadFor.deadline),
    ),
  );

/** Answers every validation with `outcome` after `delayMs`, checking it can open the password. */
const autoAnswer = (agent: ScriptedAgent, creds: AgentCredentials, outcome = 'success', delayMs = 0) => {
  agent.onMessage = (m: CloudMessage) => {
    if (m.type !== 'validate') return;
    const ok = open(creds, m) === CANARY;
    setTimeout(
      () =>
        agent.send({
          type: 'result',
          id: m.id,
          outcome: ok ? outcome : 'agent_decrypt_failed',
          agentMs: 3,
          directoryMs: 2,
          server: 'ldap://dc1',
        }),
      delayMs,
    );
  };
};

const closeAll = async (...agents: ScriptedAgent[]) => {
  for (const a of agents) a.close();
  await Promise.all(agents.map((a) => a.closed));
  await waitFor(() => env.gateway.connections().length === 0, 3000, 'no connections');
};

test('round trip: the password is sealed to the agent key and bound to the request', async () => {
  const creds = await registerAgent(env);
  const agent = await connectAgent(env, creds);
  const req = request();
  const pending = env.dispatcher.validate(req);
  const v = await agent.next('validate');
  assert.equal(v.id, req.requestId);
  assert.equal(v.tenantId, env.tenantId);
  assert.deepEqual(v.user, req.user);
  assert.equal(v.deadline, req.deadline);
  assert.ok(!JSON.stringify(v).includes(CANARY), 'no cleartext on the wire');
  assert.equal(open(creds, v), CANARY);
  // The associated data binds the envelope: another user, request, tenant or deadline fails.
  for (const tweak of [
    { user: { ...v.user, upn: 'bob@contoso.example' } },
    { id: 'req-other' },
    { tenantId: 'other' },
    { deadline: v.deadline + 1 },
  ]) {
    assert.throws(() => open(creds, v, { ...v, ...tweak }));
  }
  agent.send({
    type: 'result',
    id: v.id,
    outcome: 'invalid_credentials',
    directoryCode: '49/52e',
    server: 'ldap://dc1',
    agentMs: 12,
    directoryMs: 9,
  });
  const answer = await pending;
  assert.deepEqual(answer, {
    outcome: 'invalid_credentials',
    agentId: creds.agentId,
    server: 'ldap://dc1',
    directoryCode: '49/52e',
    agentMs: 12,
    directoryMs: 9,
  });
  await closeAll(agent);
});

/** Another tenant of the same cloud, so a test starts with no agent ever seen. */
let tenants = 0;
const freshTenant = async () =>
  (
    await createTenant(env.ctx, {
      name: `Fresh ${++tenants}`,
      domain: `fresh${tenants}.example`,
      admin: { upn: `admin@fresh${tenants}.example`, password: ADMIN_PASSWORD },
    })
  ).tenantId;

test('no agent seen recently: no_agent at once', async () => {
  // A tenant that never had an agent.
  const never = await freshTenant();
  let t0 = performance.now();
  let answer = await env.dispatcher.validate(request({ tenantId: never, deadline: Date.now() + 10_000 }));
  assert.equal(answer.outcome, 'no_agent');
  assert.ok(performance.now() - t0 < 100, 'no waiting');
  // A tenant whose agent left longer ago than the reconnect window (the round trip's agent).
  await new Promise((r) => setTimeout(r, RECONNECT_WAIT_MS + 100));
  t0 = performance.now();
  answer = await env.dispatcher.validate(request({ deadline: Date.now() + 10_000 }));
  assert.equal(answer.outcome, 'no_agent');
  assert.ok(performance.now() - t0 < 100, 'no waiting once the window has passed');
});

test('an agent that reconnects: the request held for it succeeds', async () => {
  const tenantId = await freshTenant();
  const creds = await registerAgent(env, 'restarts', tenantId);
  const first = await connectAgent(env, creds);
  await closeAll(first);
  const held = env.dispatcher.validate(request({ tenantId, deadline: Date.now() + 5000 }));
  let settled = false;
  void held.then(() => {
    settled = true;
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(settled, false, 'waiting, not no_agent');
  assert.equal(env.gateway.local.held, 1);
  // The same agent comes back (a restart): the request goes to it the moment it is ready.
  const again = new ScriptedAgent(env, creds);
  autoAnswer(again, creds);
  const t0 = performance.now();
  await again.hello();
  const answer = await held;
  assert.equal(answer.outcome, 'success');
  assert.equal(answer.agentId, creds.agentId);
  assert.ok(performance.now() - t0 < 500, `released at once, not polled (${performance.now() - t0} ms)`);
  assert.equal(env.gateway.local.held, 0);
  await closeAll(again);
});

test('an agent that dies mid-request and comes back: the request completes on its return', async () => {
  const tenantId = await freshTenant();
  const creds = await registerAgent(env, 'crashes', tenantId);
  const first = await connectAgent(env, creds);
  first.onMessage = (m) => {
    if (m.type === 'validate') first.ws.terminate();
  };
  const pending = env.dispatcher.validate(request({ tenantId, deadline: Date.now() + 5000 }));
  await first.closed;
  await waitFor(() => env.gateway.local.held === 1, 2000, 'the in-flight request held');
  const again = await connectAgent(env, creds);
  autoAnswer(again, creds);
  // It was re-sealed for the new connection (the first one never answered).
  assert.equal((await pending).outcome, 'success');
  await closeAll(again);
});

test('nobody comes back: no_agent when the reconnect window ends, not at the deadline', async () => {
  const tenantId = await freshTenant();
  const creds = await registerAgent(env, 'gone', tenantId);
  await closeAll(await connectAgent(env, creds));
  const t0 = performance.now();
  const answer = await env.dispatcher.validate(request({ tenantId, deadline: Date.now() + 10_000 }));
  const waited = performance.now() - t0;
  assert.equal(answer.outcome, 'no_agent');
  assert.ok(waited > RECONNECT_WAIT_MS - 400 && waited < RECONNECT_WAIT_MS + 1000, `waited ${waited} ms`);
  assert.equal(env.gateway.local.held, 0);
});

test('a deleted agent is not waited for: its tenant gets no_agent at once, its request too', async () => {
  const tenantId = await freshTenant();
  const creds = await registerAgent(env, 'deleted', tenantId);
  const agent = await connectAgent(env, creds);
  // A request in flight when the delete lands is not parked for a reconnect that cannot happen.
  const inFlight = env.dispatcher.validate(request({ tenantId, deadline: Date.now() + 10_000 }));
  await waitFor(() => env.gateway.local.inFlight === 1, 2000, 'the request reached the agent');
  await deleteAgent(env.ctx.db, tenantId, creds.agentId);
  const t0 = performance.now();
  assert.equal(await env.gateway.closeDeleted({ tenantId, agentId: creds.agentId }), 1);
  await agent.closed;
  assert.equal((await inFlight).outcome, 'no_agent');
  const answer = await env.dispatcher.validate(request({ tenantId, deadline: Date.now() + 10_000 }));
  assert.equal(answer.outcome, 'no_agent');
  assert.ok(performance.now() - t0 < RECONNECT_WAIT_MS - 500, `no waiting (${performance.now() - t0} ms)`);
  assert.equal(env.gateway.local.held, 0);
});

test('held requests are bounded: past the bound, no_agent at once', async () => {
  const tenantId = await freshTenant();
  const creds = await registerAgent(env, 'bound', tenantId);
  await closeAll(await connectAgent(env, creds));
  const deadline = Date.now() + 5000;
  const held = Array.from({ length: MAX_HELD }, () =>
    env.dispatcher.validate(request({ tenantId, deadline })),
  );
  assert.equal(env.gateway.local.held, MAX_HELD);
  const t0 = performance.now();
  assert.equal((await env.dispatcher.validate(request({ tenantId, deadline }))).outcome, 'no_agent');
  assert.ok(performance.now() - t0 < 100, 'the one past the bound does not wait');
  const again = await connectAgent(env, creds);
  autoAnswer(again, creds);
  for (const a of await Promise.all(held)) assert.equal(a.outcome, 'success');
  await closeAll(again);
});

test('deadline: agent_timeout, and the late answer is dropped', async () => {
  const creds = await registerAgent(env);
  const agent = await connectAgent(env, creds);
  const t0 = Date.now();
  const answer = await env.dispatcher.validate(request({ deadline: Date.now() + 400 }));
  assert.equal(answer.outcome, 'agent_timeout');
  assert.equal(answer.agentId, creds.agentId);
  assert.ok(Date.now() - t0 >= 380 && Date.now() - t0 < 1500);
  const v = await agent.next('validate');
  agent.send({ type: 'result', id: v.id, outcome: 'success', agentMs: 1, directoryMs: 1 });
  await waitFor(() => env.gateway.connections()[0]?.outstanding === 0, 1000);
  assert.equal(env.gateway.connections()[0]?.ready, true, 'a late answer does not break the connection');
  await waitFor(
    () => readFileSync(env.logFile, 'utf8').includes('"msg":"agent_late"'),
    1000,
    'agent_late logged',
  );
  await closeAll(agent);
});

test('an agent that dies mid-request: the request completes on the second agent', async () => {
  const c1 = await registerAgent(env, 'dies');
  const c2 = await registerAgent(env, 'survives');
  const a1 = await connectAgent(env, c1);
  const a2 = await connectAgent(env, c2);
  // Whichever agent receives the request first dies before answering; the other answers.
  let victim: string | null = null;
  for (const [agent, creds] of [
    [a1, c1],
    [a2, c2],
  ] as const) {
    agent.onMessage = (m) => {
      if (m.type !== 'validate') return;
      if (victim === null) {
        victim = creds.agentId;
        agent.ws.terminate();
        return;
      }
      const outcome = open(creds, m) === CANARY ? 'success' : 'agent_decrypt_failed';
      agent.send({ type: 'result', id: m.id, outcome, agentMs: 1, directoryMs: 1 });
    };
  }
  const answer = await env.dispatcher.validate(request({ deadline: Date.now() + 3000 }));
  assert.ok(victim, 'one agent received the request and died');
  assert.equal(answer.outcome, 'success');
  assert.equal(answer.agentId, victim === c1.agentId ? c2.agentId : c1.agentId, 'answered by the survivor');
  await closeAll(a1, a2);
});

test('least outstanding, round robin on ties; full agents give agent_overloaded', async () => {
  const c1 = await registerAgent(env, 'one');
  const c2 = await registerAgent(env, 'two');
  const a1 = await connectAgent(env, c1);
  const a2 = await connectAgent(env, c2);
  // Nobody answers: each request stays outstanding until its deadline.
  const deadline = Date.now() + 1500;
  const reqs = [1, 2, 3, 4].map(() => env.dispatcher.validate(request({ deadline })));
  await waitFor(
    () => env.gateway.connections().reduce((n, c) => n + c.outstanding, 0) === 4,
    1000,
    'four outstanding',
  );
  assert.deepEqual(
    env.gateway.connections().map((c) => c.outstanding),
    [2, 2],
    'spread evenly',
  );
  // maxInFlight is 2 in this suite: both agents are full.
  assert.equal((await env.dispatcher.validate(request())).outcome, 'agent_overloaded');
  for (const r of await Promise.all(reqs)) assert.equal(r.outcome, 'agent_timeout');
  await closeAll(a1, a2);
});

test('an agent that cannot open the envelope: the request is retried on another agent', async () => {
  const c1 = await registerAgent(env, 'stale-key');
  const c2 = await registerAgent(env, 'good-key');
  const a1 = await connectAgent(env, c1);
  const a2 = await connectAgent(env, c2);
  a1.onMessage = (m) => {
    if (m.type === 'validate')
      a1.send({ type: 'result', id: m.id, outcome: 'agent_decrypt_failed', agentMs: 1, directoryMs: 0 });
  };
  autoAnswer(a2, c2);
  for (let i = 0; i < 3; i++) {
    const answer = await env.dispatcher.validate(request());
    assert.equal(answer.outcome, 'success');
    assert.equal(answer.agentId, c2.agentId);
  }
  await closeAll(a1, a2);
});

test('a draining agent gets nothing new', async () => {
  const c1 = await registerAgent(env, 'draining');
  const c2 = await registerAgent(env, 'staying');
  const a1 = await connectAgent(env, c1);
  const a2 = await connectAgent(env, c2);
  let asked = 0;
  a1.onMessage = (m) => {
    if (m.type === 'validate') asked++;
  };
  a1.send({ type: 'draining' });
  await waitFor(
    () => env.gateway.connections().some((c) => c.agentId === c1.agentId && c.draining),
    1000,
    'the cloud heard the draining frame',
  );
  autoAnswer(a2, c2);
  for (let i = 0; i < 6; i++) {
    const answer = await env.dispatcher.validate(request());
    assert.equal(answer.outcome, 'success');
    assert.equal(answer.agentId, c2.agentId);
  }
  assert.equal(asked, 0, 'the draining agent was never asked');
  await closeAll(a1, a2);
});

test("an agent of the release before the draining frame: its 'shutting-down' refusal moves the sign-in", async () => {
  const c1 = await registerAgent(env, 'old-agent');
  const c2 = await registerAgent(env, 'new-agent');
  const a1 = await connectAgent(env, c1);
  const a2 = await connectAgent(env, c2);
  let refused = 0;
  a1.onMessage = (m) => {
    if (m.type !== 'validate') return;
    refused++;
    a1.send({
      type: 'result',
      id: m.id,
      outcome: 'agent_error',
      directoryCode: 'shutting-down',
      agentMs: 0,
      directoryMs: 0,
    });
  };
  autoAnswer(a2, c2);
  for (let i = 0; i < 4; i++) {
    const answer = await env.dispatcher.validate(request());
    assert.equal(answer.outcome, 'success');
    assert.equal(answer.agentId, c2.agentId);
  }
  assert.ok(refused <= 1, 'after its first refusal the old agent is treated as draining');
  await closeAll(a1, a2);
});

test('a result for another request or from another agent does not complete it', async () => {
  const c1 = await registerAgent(env, 'x1');
  const c2 = await registerAgent(env, 'x2');
  const a1 = await connectAgent(env, c1);
  const a2 = await connectAgent(env, c2);
  const req = request({ deadline: Date.now() + 800 });
  const pending = env.dispatcher.validate(req);
  // Both agents claim success for the request id; only the one that got it counts.
  await waitFor(() => env.gateway.connections().some((c) => c.outstanding === 1), 1000);
  const holder = env.gateway.connections().find((c) => c.outstanding === 1)!;
  const other = holder.agentId === c1.agentId ? a2 : a1;
  other.send({ type: 'result', id: req.requestId, outcome: 'success', agentMs: 1, directoryMs: 1 });
  assert.equal((await pending).outcome, 'agent_timeout');
  await closeAll(a1, a2);
});

test('the canary password is in no log line and no database file', async () => {
  await env.gateway.close();
  const written = env.everythingWritten();
  assert.ok(written.length > 1000, 'the log and database were written');
  assert.ok(!written.includes(CANARY));
  assert.ok(!written.includes(Buffer.from(CANARY).toString('base64')));
});
