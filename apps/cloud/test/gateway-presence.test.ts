/**
 * Presence in the database: heartbeats are not written one by one; the node writes every agent it
 * holds in one batch every presenceWriteMs, and the admin/CLI view reads it with that resolution.
 * Also the pure arithmetic of rebalancing (gateway/balance.ts): who sheds, and how many.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { storedLiveness } from '../src/config.ts';
import { movesFor } from '../src/gateway/balance.ts';
import { countActiveAgents, getAgent } from '../src/store/agents.ts';
import { connectAgent, type Env, registerAgent, startEnv, waitFor } from './gateway-harness.ts';

let env: Env;
before(async () => {
  // Presence written every 1.2 s; the scripted agents heartbeat every 150 ms.
  env = await startEnv({ heartbeatMs: 200, presenceWriteMs: 1200 });
});
after(() => env.close());

const seen = async (id: string) => (await getAgent(env.ctx.db, id))!.lastSeenAt!;

test('heartbeats do not write last_seen_at; the batch does, for every agent at once', async () => {
  const [a, b] = [await registerAgent(env, 'p1'), await registerAgent(env, 'p2')];
  const agents = [await connectAgent(env, a), await connectAgent(env, b)];
  const atHello = [await seen(a.agentId), await seen(b.agentId)];
  // Past the next batch: both rows carry the batch's one timestamp.
  await waitFor(async () => (await seen(a.agentId)) > atHello[0]!, 3000, 'a presence batch');
  const batch = await seen(a.agentId);
  assert.equal(await seen(b.agentId), batch, 'one statement wrote both');
  // Heartbeats arrive every 150 ms (keepAlive); for most of an interval nothing is written.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await seen(a.agentId), batch, 'heartbeats wrote nothing');
  for (const x of agents) x.close();
});

test('Active in the database view allows for the presence interval', async () => {
  const { config } = env.ctx;
  assert.equal(storedLiveness(config), config.inactiveAfterMs + 1200);
  const c = await registerAgent(env, 'p3');
  const agent = await connectAgent(env, c);
  const at = await seen(c.agentId);
  // Just past inactiveAfterMs since the last write, but within the interval: still Active.
  const now = at + config.inactiveAfterMs + 600;
  assert.ok(
    (await countActiveAgents(env.ctx.db, env.tenantId, { now, inactiveAfterMs: storedLiveness(config) })) >=
      1,
  );
  agent.close();
});

test('rebalancing: a node above its share sheds down to it, gradually; others do nothing', () => {
  // Alone: nobody to move to.
  assert.equal(movesFor(5000, 0, [], 200), 0);
  // All on this node, one empty peer: half of them, 200 per step at most.
  assert.equal(movesFor(5000, 0, [0], 200), 200);
  assert.equal(movesFor(4, 0, [0], 200), 2);
  assert.equal(movesFor(3, 0, [0], 200), 1);
  // Agents asked to move still count: a move under way is not answered with more moves.
  assert.equal(movesFor(2, 2, [0], 200), 0);
  assert.equal(movesFor(2500, 2300, [200], 200), 0);
  // The underloaded node, and a node within the slack, move nothing.
  assert.equal(movesFor(0, 0, [4], 200), 0);
  assert.equal(movesFor(2550, 0, [2450], 200), 0);
  // Three nodes: each sheds only its own excess over the share.
  assert.equal(movesFor(3000, 0, [3000, 0], 5000), 1000);
  // Twenty survivors and one restarted node: the pace into it is shared out, 10 each, not 200 each.
  assert.equal(movesFor(5000, 0, [...Array(19).fill(5000), 0], 200), 10);
  // Two empty nodes take twice the pace.
  assert.equal(movesFor(6000, 0, [0, 0], 200), 400);
});
