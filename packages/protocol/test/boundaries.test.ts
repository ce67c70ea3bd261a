import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateHpkeKeyPair, hpkeOpen } from '../src/hpke.ts';
import { MAX_DN_LENGTH, TenantId } from '../src/ids.ts';
import { AgentMessage, aad, CloudMessage, parseFrame, type SyncPage } from '../src/messages.ts';
import { RelayedAnswer, RelayedRequest, sealPassword } from '../src/relay.ts';

const DN_1500 = `CN=Alice,${'OU=Deeply Nested Unit,'.repeat(68)}DC=contoso,DC=example`.slice(0, 1500);

test('a tenant id is one URL segment and one NATS subject token', () => {
  for (const ok of ['0b7e4c1e-3d2a-4f5b-9c8d-1a2b3c4d5e6f', 'tenant-a', 't1', 'a.b_c', 'x'.repeat(128)])
    assert.ok(TenantId.safeParse(ok).success, ok);
  for (const bad of ['', '-a', 'a b', 'a/b', '*', 'a.>', 'a*', 'é', 'x'.repeat(129)])
    assert.ok(!TenantId.safeParse(bad).success, bad);
});

const user = { upn: 'alice@contoso.example', dn: DN_1500, anchor: 'guid-alice' };
const page = (dn: string) => ({
  type: 'sync.page',
  runId: 'run-1',
  mode: 'full',
  seq: 0,
  users: [{ anchor: 'guid-alice', upn: user.upn, dn, enabled: true }],
  final: true,
});

test('a 1,500-character DN goes through every boundary: sync, relay, validate frame, agent parse', () => {
  assert.equal(DN_1500.length, 1500);
  const synced = parseFrame(AgentMessage, JSON.stringify(page(DN_1500)));
  assert.equal((synced as SyncPage).users[0]!.dn, DN_1500);

  const keys = generateHpkeKeyPair();
  const to = { tenantId: 'tenant-a', requestId: 'req-1', upn: user.upn, deadline: Date.now() + 5000 };
  const envelope = sealPassword(keys.publicKey, new TextEncoder().encode('pw'), to);
  const relayed = RelayedRequest.parse(
    JSON.parse(JSON.stringify({ ...to, user, envelopes: { 'agent-1': envelope } })),
  );
  assert.equal(relayed.user.dn, DN_1500);

  // What the serving node's dispatcher sends its agent, and what the agent parses.
  const frame = JSON.stringify({
    type: 'validate',
    id: relayed.requestId,
    tenantId: relayed.tenantId,
    user: relayed.user,
    ...relayed.envelopes['agent-1']!,
    deadline: relayed.deadline,
    sentAt: Date.now(),
  });
  const v = parseFrame(CloudMessage, frame);
  assert.ok(v && v.type === 'validate', 'the agent accepts the frame');
  assert.equal(v.user.dn, DN_1500);
  const opened = hpkeOpen(
    keys.privateKey,
    Buffer.from(v.enc, 'base64url'),
    Buffer.from(v.ct, 'base64url'),
    aad(v.tenantId, v.id, v.user.upn, v.deadline),
  );
  assert.equal(new TextDecoder().decode(opened), 'pw');
});

test('a DN over the limit is refused alike by sync, relay and validate frame', () => {
  const long = 'C'.repeat(MAX_DN_LENGTH + 1);
  assert.equal(parseFrame(AgentMessage, JSON.stringify(page(long))), null);
  const env = { enc: 'AAAA', ct: 'AAAA' };
  const base = { requestId: 'r', tenantId: 'tenant-a', deadline: Date.now() + 1000 };
  assert.ok(
    !RelayedRequest.safeParse({ ...base, user: { ...user, dn: long }, envelopes: { a: env } }).success,
  );
  assert.ok(RelayedRequest.safeParse({ ...base, user, envelopes: { a: env } }).success);
  const frame = { type: 'validate', id: 'r', tenantId: 'tenant-a', ...env, deadline: 1, sentAt: 1 };
  assert.ok(!CloudMessage.safeParse({ ...frame, user: { ...user, dn: long } }).success);
  assert.ok(CloudMessage.safeParse({ ...frame, user }).success);
});

test('a relayed answer carries only a known outcome', () => {
  assert.ok(RelayedAnswer.safeParse({ outcome: 'success', node: 'n1' }).success);
  assert.ok(RelayedAnswer.safeParse({ outcome: 'no_agent' }).success);
  assert.ok(!RelayedAnswer.safeParse({ outcome: 'made_up' }).success);
});
