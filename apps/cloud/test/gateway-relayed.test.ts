/**
 * Requests relayed from another cloud node, as the cluster router's serve hands them to this
 * node's dispatcher: parsed with RelayedRequest, sealed to every agent of the tenant. They go
 * only to an agent they have an envelope for, as sealed, and whatever the relay schema accepts
 * (a 1,500-character DN here) the agent's own parse accepts too.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aad, CloudMessage, hpkeOpen, RelayedRequest, sealPassword } from '@gatehouse/protocol';
import type { RelayedValidation } from '../src/signin/types.ts';
import {
  type AgentCredentials,
  connectAgent,
  type Env,
  registerAgent,
  type ScriptedAgent,
  startEnv,
  waitFor,
} from './gateway-harness.ts';

const CANARY = 'Canary-Pa55word-relayed-41d2';
const canary = new TextEncoder().encode(CANARY);

let env: Env;
before(async () => {
  env = await startEnv();
});
after(() => env.close());

let seq = 0;
/** A relayed request with one envelope per agent in `sealTo`, through the relay's own schema. */
const relayed = (
  sealTo: AgentCredentials[],
  dn = 'CN=Alice,OU=Staff,DC=contoso,DC=example',
): RelayedValidation => {
  const base = {
    tenantId: env.tenantId,
    requestId: `relayed-${++seq}`,
    user: { upn: 'Alice@Contoso.example', dn, anchor: 'guid-alice' },
    deadline: Date.now() + 2000,
  };
  const to = { ...base, upn: base.user.upn };
  const envelopes = Object.fromEntries(
    sealTo.map((c) => [c.agentId, sealPassword(c.hpke.publicKey, canary, to)]),
  );
  return { kind: 'relayed', ...RelayedRequest.parse(JSON.parse(JSON.stringify({ ...base, envelopes }))) };
};

/** Answers like the real agent: parses the frame with the protocol schema, opens, answers. */
const answerAsAgent = (agent: ScriptedAgent, creds: AgentCredentials, seen: CloudMessage[] = []) => {
  agent.onMessage = (m) => {
    if (m.type !== 'validate') return;
    const parsed = CloudMessage.safeParse(JSON.parse(JSON.stringify(m)));
    if (parsed.success) seen.push(parsed.data);
    const b64 = (s: string) => Buffer.from(s, 'base64url');
    let ok = false;
    try {
      const info = aad(m.tenantId, m.id, m.user.upn, m.deadline);
      ok = new TextDecoder().decode(hpkeOpen(creds.hpke.privateKey, b64(m.enc), b64(m.ct), info)) === CANARY;
    } catch {}
    const outcome = !parsed.success ? 'agent_error' : ok ? 'success' : 'agent_decrypt_failed';
    agent.send({ type: 'result', id: m.id, outcome, agentMs: 1, directoryMs: 1 });
  };
};

const closeAll = async (...agents: ScriptedAgent[]) => {
  for (const a of agents) a.close();
  await Promise.all(agents.map((a) => a.closed));
  await waitFor(() => env.gateway.connections().length === 0, 3000, 'no connections');
};

test('a pre-sealed request goes only to an agent it has an envelope for, as sealed', async () => {
  const c1 = await registerAgent(env, 'no-envelope');
  const c2 = await registerAgent(env, 'has-envelope');
  const a1 = await connectAgent(env, c1);
  const a2 = await connectAgent(env, c2);
  answerAsAgent(a1, c1);
  answerAsAgent(a2, c2);
  for (let i = 0; i < 3; i++) {
    const answer = await env.gateway.dispatcher.validate(relayed([c2]));
    assert.equal(answer.outcome, 'success');
    assert.equal(answer.agentId, c2.agentId);
  }
  // No envelope for any connected agent: no_agent at once.
  const { envelopes, ...rest } = relayed([c2]);
  const other = { ...rest, envelopes: { other: envelopes[c2.agentId]! } };
  assert.equal((await env.gateway.dispatcher.validate(other)).outcome, 'no_agent');
  await closeAll(a1, a2);
});

test('a relayed 1,500-character DN reaches the agent and passes its parse', async () => {
  const creds = await registerAgent(env, 'long-dn');
  const agent = await connectAgent(env, creds);
  const seen: CloudMessage[] = [];
  answerAsAgent(agent, creds, seen);
  const dn = `CN=Alice,${'OU=Nested Unit Name,'.repeat(80)}DC=contoso,DC=example`.slice(0, 1500);
  const answer = await env.gateway.dispatcher.validate(relayed([creds], dn));
  assert.equal(answer.outcome, 'success');
  assert.equal(seen.length, 1);
  assert.ok(seen[0]!.type === 'validate' && seen[0]!.user.dn === dn);
  await closeAll(agent);
});
