import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { isGatehouseError, MAX_AGENTS_PER_TENANT } from '@gatehouse/protocol';
import {
  countActiveAgents,
  deleteAgent,
  getAgent,
  listAgents,
  pruneAgents,
  registerAgent,
  touchAgent,
  updateAgentCert,
} from '../src/store/agents.ts';
import { consumeRegistrationToken, createRegistrationToken } from '../src/store/registration-tokens.ts';
import { createTenant } from '../src/store/tenants.ts';
import { openTestState, type TestState } from './directory-fixtures.ts';

let s: TestState;
let tenantId: string;
before(async () => {
  s = await openTestState();
  ({ tenantId } = await createTenant(s.ctx, {
    name: 'Contoso',
    domain: 'contoso.com',
    admin: { upn: 'admin@contoso.com', password: 'Break-glass-pw-1' },
  }));
});
after(() => s.cleanup());

const code = (c: string) => (err: unknown) => isGatehouseError(err) && err.code === c;
const hpke = () => randomBytes(32).toString('base64url');
const agentInput = (host: string) => ({
  tenantId,
  hostname: host,
  version: '0.1.0',
  certSerial: randomBytes(8).toString('hex'),
  certNotAfter: Date.now() + 86_400_000,
  hpkePublicKey: hpke(),
});

test('a registration token works once, and not after it expires', async () => {
  const now = 1_800_000_000_000;
  const { token, expiresAt } = await createRegistrationToken(s.ctx.db, tenantId, 'operator', 600, now);
  assert.match(token, /^ghr_[A-Za-z0-9_-]{43}$/);
  assert.equal(expiresAt, now + 600_000);
  // Only its hash is stored.
  assert.equal(s.dbBytes().includes(token.slice(4)), false);

  assert.equal(await consumeRegistrationToken(s.ctx.db, token, now + 1000), tenantId);
  await assert.rejects(
    consumeRegistrationToken(s.ctx.db, token, now + 2000),
    code('registration_token_invalid'),
  );

  const late = await createRegistrationToken(s.ctx.db, tenantId, 'operator', 60, now);
  await assert.rejects(
    consumeRegistrationToken(s.ctx.db, late.token, now + 60_000),
    code('registration_token_invalid'),
  );
  await assert.rejects(
    consumeRegistrationToken(s.ctx.db, `ghr_${'A'.repeat(43)}`, now),
    code('registration_token_invalid'),
  );

  // Racing registrations with one token: exactly one wins.
  const race = await createRegistrationToken(s.ctx.db, tenantId, 'operator', 600, now);
  const results = await Promise.allSettled(
    Array.from({ length: 8 }, () => consumeRegistrationToken(s.ctx.db, race.token, now + 1)),
  );
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
});

test(`the ${MAX_AGENTS_PER_TENANT + 1}st agent is refused; deleting one frees a slot`, async () => {
  const ids: string[] = [];
  for (let i = 0; i < MAX_AGENTS_PER_TENANT; i++)
    ids.push((await registerAgent(s.ctx.db, agentInput(`host${i}`))).id);
  await assert.rejects(registerAgent(s.ctx.db, agentInput('one-too-many')), code('agent_limit_reached'));
  await deleteAgent(s.ctx.db, tenantId, ids[0]!);
  assert.ok((await getAgent(s.ctx.db, ids[0]!))?.deletedAt, 'a deleted agent keeps its row, marked deleted');
  await assert.rejects(deleteAgent(s.ctx.db, tenantId, ids[0]!), code('not_found'));
  const again = await registerAgent(s.ctx.db, { ...agentInput('replacement'), id: 'agent-fixed-id' });
  assert.equal(again.id, 'agent-fixed-id');
  assert.equal(
    (await listAgents(s.ctx.db, tenantId, { now: Date.now(), inactiveAfterMs: 30_000 })).length,
    40,
  );
  await assert.rejects(
    registerAgent(s.ctx.db, { ...agentInput('x'), hpkePublicKey: 'short' }),
    code('validation_failed'),
  );
  // Clean up for the next test.
  await pruneAgents(s.ctx.db, Date.now() + 1, 0);
  assert.equal(
    (await listAgents(s.ctx.db, tenantId, { now: Date.now(), inactiveAfterMs: 30_000 })).length,
    0,
  );
});

test('agents are active while heard from, inactive after, and pruned when long silent', async () => {
  const t0 = 1_900_000_000_000;
  const a = await registerAgent(s.ctx.db, agentInput('dc-agent-1'), t0);
  const b = await registerAgent(s.ctx.db, agentInput('dc-agent-2'), t0);
  const live = { now: t0 + 10_000, inactiveAfterMs: 30_000 };
  assert.equal(await countActiveAgents(s.ctx.db, tenantId, live), 0, 'never heard from: inactive');

  await touchAgent(s.ctx.db, a.id, t0 + 5_000, '203.0.113.7');
  const listed = await listAgents(s.ctx.db, tenantId, live);
  assert.deepEqual(
    listed.map((x) => [x.hostname, x.status]),
    [
      ['dc-agent-1', 'active'],
      ['dc-agent-2', 'inactive'],
    ],
  );
  assert.equal(listed[0]?.externalIp, '203.0.113.7');
  assert.equal(await countActiveAgents(s.ctx.db, tenantId, live), 1);
  assert.equal(await countActiveAgents(s.ctx.db, tenantId, { now: t0 + 40_000, inactiveAfterMs: 30_000 }), 0);

  const key = hpke();
  await updateAgentCert(s.ctx.db, a.id, { certSerial: 'abcd', certNotAfter: t0 + 99, hpkePublicKey: key });
  const renewed = await getAgent(s.ctx.db, a.id);
  assert.deepEqual(
    [renewed?.certSerial, renewed?.certNotAfter, renewed?.hpkePublicKey],
    ['abcd', t0 + 99, key],
  );

  // Ten days later b (never seen since t0) is pruned; a was seen at t0+5s, so a cutoff between keeps it.
  assert.equal(await pruneAgents(s.ctx.db, t0 + 10 * 86_400_000 + 1_000, 10 * 86_400_000), 1);
  assert.equal(await getAgent(s.ctx.db, b.id), null);
  assert.ok(await getAgent(s.ctx.db, a.id));
});
