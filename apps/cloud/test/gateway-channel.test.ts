/**
 * The mutual-TLS agent channel with real sockets and real certificates: who gets in, who is
 * refused, and how the gateway treats misbehaving agents without disturbing the others.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createCsr, MAX_FRAME_BYTES, signAgentCsr } from '@gatehouse/protocol';
import { deleteAgent, getAgent } from '../src/store/agents.ts';
import { createTenant, getTenantSecrets } from '../src/store/tenants.ts';
import {
  type AgentCredentials,
  connectAgent,
  type Env,
  registerAgent,
  ScriptedAgent,
  startEnv,
  waitFor,
} from './gateway-harness.ts';

let env: Env;
before(async () => {
  env = await startEnv();
});
after(() => env.close());

const refusal = async (agent: ScriptedAgent) => {
  const err = (await agent.opened.then(
    () => null,
    (e: unknown) => e,
  )) as { status?: number; body?: string } | null;
  assert.ok(err, 'the connection must be refused');
  return err;
};

test('a registered agent connects over mutual TLS, says hello and gets a welcome', async () => {
  const creds = await registerAgent(env);
  const agent = new ScriptedAgent(env, creds);
  const skewedClock = Date.now() + 90_000;
  const welcome = await agent.hello({ clock: skewedClock, hostname: 'dc1.contoso.example' });
  assert.equal(welcome.agentId, creds.agentId);
  assert.equal(welcome.tenantId, env.tenantId);
  assert.equal(welcome.heartbeatMs, env.ctx.config.heartbeatMs);
  const info = env.gateway.connections().find((c) => c.agentId === creds.agentId)!;
  assert.equal(info.ready, true);
  assert.equal(info.hostname, 'dc1.contoso.example');
  assert.ok(Math.abs(info.clockSkewMs! - 90_000) < 5_000, `skew measured: ${info.clockSkewMs}`);
  const row = await getAgent(env.ctx.db, creds.agentId);
  assert.ok(row!.lastSeenAt! > Date.now() - 5000, 'presence recorded at hello');
  assert.equal(row!.externalIp, '127.0.0.1');
  assert.equal(await env.dispatcher.activeAgentCount(env.tenantId), 1);
  agent.close();
  await agent.closed;
  await waitFor(() => env.gateway.connections().length === 0, 3000, 'connection gone');
  assert.equal(await env.dispatcher.activeAgentCount(env.tenantId), 0);
});

test('no client certificate: 401 certificate_rejected before the upgrade', async () => {
  const err = await refusal(new ScriptedAgent(env, null));
  assert.equal(err.status, 401);
  assert.equal(JSON.parse(err.body!).error, 'certificate_rejected');
});

test("a certificate signed by another tenant's CA is refused", async () => {
  const real = await registerAgent(env);
  const other = await createTenant(env.ctx, {
    name: 'Fabrikam',
    domain: 'fabrikam.example',
    admin: { upn: 'admin@fabrikam.example', password: 'Fabrikam-admin-pw-1' },
  });
  const otherCa = await getTenantSecrets(env.ctx, other.tenantId);
  const { csrPem, keyPem } = await createCsr('evil');
  // Claims to be our agent of our tenant, but issued by Fabrikam's CA.
  const forged = await signAgentCsr(
    { certPem: otherCa.caCertPem, keyPem: otherCa.caKeyPem },
    csrPem,
    { agentId: real.agentId, tenantId: env.tenantId },
    30,
  );
  const err = await refusal(new ScriptedAgent(env, { certPem: forged.certPem, keyPem }));
  assert.equal(err.status, 401);
  // Even with the row's serial matching the forged one, the issuer check alone refuses it.
  await env.ctx.db
    .updateTable('agents')
    .set({ cert_serial: forged.serial })
    .where('id', '=', real.agentId)
    .execute();
  const err2 = await refusal(new ScriptedAgent(env, { certPem: forged.certPem, keyPem }));
  assert.equal(err2.status, 401);
  assert.equal(JSON.parse(err2.body!).error, 'certificate_rejected');
  // And the real certificate now names a serial the row no longer holds.
  const err3 = await refusal(new ScriptedAgent(env, real));
  assert.equal(err3.status, 401);
});

test('a deleted agent is refused at once and its live socket is closed', async () => {
  const creds = await registerAgent(env);
  const agent = await connectAgent(env, creds);
  await deleteAgent(env.ctx.db, env.tenantId, creds.agentId);
  assert.equal(env.gateway.revokeAgent(creds.agentId), 1);
  const err = await agent.next('error');
  assert.equal(err.code, 'certificate_rejected');
  await agent.closed;
  const again = await refusal(new ScriptedAgent(env, creds));
  assert.equal(again.status, 401);
});

test('an agent deleted by another process (the CLI) is cut off at the next presence write', async () => {
  const creds = await registerAgent(env);
  const agent = await connectAgent(env, creds);
  // Straight in the database, as the CLI would: the gateway is not told.
  await env.ctx.db
    .updateTable('agents')
    .set({ deleted_at: Date.now() })
    .where('id', '=', creds.agentId)
    .execute();
  const started = Date.now();
  await agent.closed;
  // presenceWriteMs defaults to inactiveAfterMs (1.5 s here): one batch, which rechecks the rows.
  assert.ok(Date.now() - started < 2500, 'closed at the next presence write');
});

test('malformed frames get protocol_error, three in a row close the socket, others keep working', async () => {
  const good = await connectAgent(env, await registerAgent(env, 'good'));
  // No keep-alive heartbeats here: they are valid frames and would reset the count.
  const bad = new ScriptedAgent(env, await registerAgent(env, 'bad'));
  await bad.hello();
  bad.ws.send('{not json');
  assert.equal((await bad.next('error')).code, 'protocol_error');
  bad.send({ type: 'result', id: 'x' });
  assert.equal((await bad.next('error')).code, 'protocol_error');
  bad.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  assert.equal((await bad.next('error')).code, 'protocol_error');
  assert.equal(await bad.closed, 1002);
  // The good agent still answers dispatches.
  good.onMessage = (m) => {
    if (m.type === 'validate')
      good.send({ type: 'result', id: m.id, outcome: 'success', agentMs: 1, directoryMs: 1 });
  };
  const answer = await env.dispatcher.validate({
    kind: 'cleartext',
    tenantId: env.tenantId,
    requestId: 'after-malformed',
    user: { upn: 'alice@contoso.example', dn: 'cn=alice', anchor: 'a1' },
    password: 'x',
    deadline: Date.now() + 2000,
  });
  assert.equal(answer.outcome, 'success');
  good.close();
  await good.closed;
});

test('a valid frame resets the malformed count', async () => {
  const a = new ScriptedAgent(env, await registerAgent(env));
  await a.hello();
  for (let i = 0; i < 4; i++) {
    a.ws.send('garbage');
    assert.equal((await a.next('error')).code, 'protocol_error');
    if (i % 2 === 1) a.heartbeat();
  }
  assert.equal(a.closeCode, null, 'still open: never three in a row');
  a.close();
  await a.closed;
});

test('an oversized frame closes only that connection (1009)', async () => {
  const other = await connectAgent(env, await registerAgent(env, 'other'));
  const bigCreds = await registerAgent(env, 'big');
  const big = await connectAgent(env, bigCreds);
  big.ws.send(JSON.stringify({ type: 'heartbeat', pad: 'x'.repeat(MAX_FRAME_BYTES + 10) }));
  assert.equal(await big.closed, 1009);
  await waitFor(
    () => !env.gateway.connections().some((c) => c.agentId === bigCreds.agentId),
    3000,
    'big gone',
  );
  assert.equal(await env.dispatcher.activeAgentCount(env.tenantId), 1, 'the other agent is still active');
  other.close();
  await other.closed;
});

test('another protocol major gets an error and is closed', async () => {
  const a = new ScriptedAgent(env, await registerAgent(env));
  await a.opened;
  a.send({
    type: 'hello',
    protocol: 99,
    version: '9',
    hostname: 'h',
    capabilities: [],
    directory: { ok: true },
    clock: Date.now(),
  });
  const e = await a.next('error');
  assert.equal(e.code, 'protocol_error');
  assert.match(e.message, /99/);
  await a.closed;
});

test('an agent that never says hello, or goes silent, is dropped', async () => {
  const creds: AgentCredentials = await registerAgent(env);
  const silent = new ScriptedAgent(env, creds);
  await silent.hello();
  // No heartbeats: inactiveAfterMs is 1.5 s in these tests.
  const t0 = Date.now();
  await silent.closed;
  const took = Date.now() - t0;
  assert.ok(took >= 1000 && took < 4000, `dropped after ${took} ms`);
  assert.equal(await env.dispatcher.activeAgentCount(env.tenantId), 0);
});
