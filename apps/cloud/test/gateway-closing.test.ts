/**
 * Issue 10, item 1: an agent that closes its socket (or sends an oversized frame) while the cloud
 * still owes it answers once crashed the whole process: the sync page's answer was sent to a
 * CLOSING socket, `sendRaw` threw, the `.catch` threw again and the rejection went unhandled.
 * These run the real gateway with real registered certificates and watch the process for any
 * unhandled rejection or uncaught exception while the bad agent misbehaves.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { MAX_FRAME_BYTES, type SyncedUser } from '@gatehouse/protocol';
import {
  connectAgent,
  type Env,
  registerAgent,
  ScriptedAgent,
  startEnv,
  waitFor,
} from './gateway-harness.ts';

let env: Env;
const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);
before(async () => {
  process.on('unhandledRejection', onEscape);
  process.on('uncaughtException', onEscape);
  env = await startEnv();
});
after(async () => {
  process.off('unhandledRejection', onEscape);
  process.off('uncaughtException', onEscape);
  await env.close();
});
afterEach(() => {
  assert.deepEqual(
    escaped.splice(0).map((e) => String((e as Error)?.stack ?? e)),
    [],
    'nothing escaped to the process',
  );
});

const user = (i: number): SyncedUser => ({
  anchor: `close-guid-${i}`,
  upn: `close${i}@contoso.example`,
  dn: `CN=Close ${i},DC=contoso,DC=example`,
  enabled: true,
});

const page = (runId: string, seq: number, n = 50) => ({
  type: 'sync.page',
  runId,
  mode: 'full',
  seq,
  users: Array.from({ length: n }, (_, i) => user(seq * n + i)),
  final: false,
});

/** A good agent of the same tenant: answers every validate with success. */
const answering = async () => {
  const good = await connectAgent(env, await registerAgent(env, 'good'));
  good.onMessage = (m) => {
    if (m.type === 'validate')
      good.send({ type: 'result', id: m.id, outcome: 'success', agentMs: 1, directoryMs: 1 });
  };
  return good;
};

const signIn = (id: string) =>
  env.ctx.dispatcher.validate({
    tenantId: env.tenantId,
    requestId: id,
    user: { upn: 'alice@contoso.example', dn: 'cn=alice', anchor: 'a1' },
    password: 'x',
    deadline: Date.now() + 3000,
  });

/** Lets the gateway finish whatever it was doing for the closed agent (database writes, answers). */
const settle = () => new Promise((r) => setTimeout(r, 400));

test('hello, sync pages in a row, then close: no throw escapes, other agents keep serving', async () => {
  const good = await answering();
  for (let round = 0; round < 5; round++) {
    const bad = new ScriptedAgent(env, await registerAgent(env, `bad-${round}`));
    await bad.hello();
    for (let seq = 0; seq < 6; seq++) bad.send(page(`run-${round}`, seq));
    // An out-of-order page too: its protocol_error is also owed to a closing socket.
    bad.send(page(`run-${round}`, 42));
    bad.close();
    await bad.closed;
    await settle();
    assert.equal((await signIn(`after-close-${round}`)).outcome, 'success');
  }
  good.close();
  await good.closed;
});

test('hello, sync pages, then an oversized frame: only that connection closes (1009)', async () => {
  const good = await answering();
  const bad = new ScriptedAgent(env, await registerAgent(env, 'big'));
  await bad.hello();
  for (let seq = 0; seq < 6; seq++) bad.send(page('run-big', seq));
  bad.ws.send(JSON.stringify({ type: 'heartbeat', pad: 'x'.repeat(MAX_FRAME_BYTES + 10) }));
  assert.equal(await bad.closed, 1009);
  await settle();
  assert.equal((await signIn('after-oversized')).outcome, 'success');
  good.close();
  await good.closed;
});

test('hello then an immediate close, before the welcome can be sent', async () => {
  for (let i = 0; i < 5; i++) {
    const bad = new ScriptedAgent(env, await registerAgent(env, `hello-close-${i}`));
    await bad.opened;
    bad.send({
      type: 'hello',
      protocol: 1,
      version: '0.1.0-test',
      hostname: 'h',
      capabilities: [],
      directory: { ok: true },
      clock: Date.now(),
    });
    bad.ws.terminate();
    await bad.closed;
  }
  await settle();
  await waitFor(() => env.gateway.connections().length === 0, 3000, 'no connection left');
});
