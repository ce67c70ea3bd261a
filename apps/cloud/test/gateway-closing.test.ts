/**
 * Issue 10, item 1: an agent that closes its socket (or sends an oversized frame) while the cloud
 * still owes it answers once crashed the whole process: the sync page's answer was sent to a
 * CLOSING socket, the connection's send threw, the `.catch` threw again and the rejection went
 * unhandled.
 * These run the real gateway with real registered certificates and watch the process for any
 * unhandled rejection or uncaught exception while the bad agent misbehaves.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { MAX_FRAME_BYTES, type SyncedUser } from '@gatehouse/protocol';
import pino from 'pino';
import { WebSocket as Client, WebSocketServer } from 'ws';
import { AgentConnection } from '../src/gateway/connection.ts';
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
  env.dispatcher.validate({
    kind: 'cleartext',
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

test('a hook that throws, synchronously or by rejecting, closes only its connection with internal_error', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  const port = (wss.address() as { port: number }).port;
  const closed: string[] = [];
  wss.on('connection', (ws, req) => {
    const which = String(req.url);
    new AgentConnection(
      ws,
      { agentId: which, tenantId: 't', serial: '1', hpkeKey: new Uint8Array(32), externalIp: null },
      {
        log: pino({ level: 'silent' }),
        now: Date.now,
        heartbeatMs: 1000,
        hooks: {
          onHello: async () => {},
          onReady: () => {},
          onClosed: (c) => {
            closed.push(c.agentId);
            if (c.agentId === '/sync') throw new Error('onClosed bug');
          },
          onResult: () => {
            throw new Error('onResult bug');
          },
          onHeartbeat: () => Promise.reject(new Error('heartbeat bug')),
          onSyncPage: () => Promise.reject(new Error('sync bug')),
        },
      },
    );
  });
  const hello = JSON.stringify({
    type: 'hello',
    protocol: 1,
    version: '0',
    hostname: 'h',
    capabilities: [],
    directory: { ok: true },
    clock: Date.now(),
  });
  const talk = async (path: string, frame: Record<string, unknown>) => {
    const ws = new Client(`ws://127.0.0.1:${port}${path}`);
    const got: Array<{ type: string; code?: string }> = [];
    ws.on('message', (d) => got.push(JSON.parse(String(d))));
    await new Promise((r) => ws.once('open', r));
    ws.send(hello);
    while (!got.some((m) => m.type === 'welcome')) await new Promise((r) => setTimeout(r, 10));
    ws.send(JSON.stringify(frame));
    return { ws, got };
  };
  // A synchronous throw in onResult: the connection is closed with internal_error (1011).
  const r = await talk('/result', {
    type: 'result',
    id: 'r1',
    outcome: 'success',
    agentMs: 1,
    directoryMs: 1,
  });
  const code = await new Promise((res) => r.ws.once('close', res));
  assert.equal(code, 1011);
  assert.deepEqual(
    r.got.filter((m) => m.type === 'error').map((m) => m.code),
    ['internal_error'],
  );
  // A failed heartbeat write and a failed sync page are answered or logged; those connections stay.
  const h = await talk('/heartbeat', {
    type: 'heartbeat',
    clock: Date.now(),
    directory: { ok: true },
    inFlight: 0,
  });
  const s = await talk('/sync', {
    type: 'sync.page',
    runId: 'r',
    mode: 'full',
    seq: 0,
    users: [],
    final: true,
  });
  await waitFor(() => s.got.some((m) => m.type === 'error'), 3000, 'sync error answered');
  assert.equal(s.got.find((m) => m.type === 'error')?.code, 'internal_error');
  assert.equal(h.ws.readyState, Client.OPEN);
  assert.equal(s.ws.readyState, Client.OPEN);
  // A throw in onClosed (the sync one) stays in the connection too.
  h.ws.close();
  s.ws.close();
  await waitFor(() => closed.length === 3, 3000, 'all three closed');
  await new Promise<void>((res) => wss.close(() => res()));
});
