/**
 * The per-tenant agent limit under concurrency, run on SQLite by agent-limit.test.ts and on
 * PostgreSQL by agent-limit.int.test.ts (where concurrent registrations from several cloud nodes
 * are serialised by a lock on the tenant row), and the registration token: a refused registration
 * leaves it unused.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { isGatehouseError, MAX_AGENTS_PER_TENANT } from '@gatehouse/protocol';
import { deleteAgent, listAgents, registerAgent } from '../src/store/agents.ts';
import {
  consumeRegistrationToken,
  createRegistrationToken,
  peekRegistrationToken,
} from '../src/store/registration-tokens.ts';
import { createTenant } from '../src/store/tenants.ts';
import { openTestState } from './directory-fixtures.ts';

const input = (tenantId: string, host: string) => ({
  tenantId,
  hostname: host,
  version: '0.1.0',
  certSerial: randomBytes(8).toString('hex'),
  certNotAfter: Date.now() + 86_400_000,
  hpkePublicKey: randomBytes(32).toString('base64url'),
});

/** The case on one engine: `database` is PostgreSQL's URL, null when no server runs here. */
export const agentLimitTest = (engine: 'sqlite' | 'postgres', database?: string | null) =>
  test(`${engine}: ${MAX_AGENTS_PER_TENANT + 10} concurrent registrations, exactly ${MAX_AGENTS_PER_TENANT} win; the token of a refused one stays usable`, {
    skip: engine === 'postgres' && !database ? 'PostgreSQL is not running here' : false,
  }, async () => {
    const s = await openTestState(engine === 'postgres' ? { database: database! } : {});
    try {
      const { tenantId } = await createTenant(s.ctx, {
        name: 'Fabrikam',
        domain: `fabrikam-${engine}.com`,
        admin: { upn: `admin@fabrikam-${engine}.com`, password: 'Break-glass-pw-1' },
      });
      const now = Date.now();
      const results = await Promise.allSettled(
        Array.from({ length: MAX_AGENTS_PER_TENANT + 10 }, (_, i) =>
          registerAgent(s.ctx.db, input(tenantId, `host-${i}`), now),
        ),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, MAX_AGENTS_PER_TENANT);
      for (const r of results) {
        if (r.status === 'rejected')
          assert.ok(isGatehouseError(r.reason) && r.reason.code === 'agent_limit_reached', String(r.reason));
      }
      const { token } = await createRegistrationToken(s.ctx.db, tenantId, 'test', 600, now);
      await assert.rejects(
        registerAgent(s.ctx.db, input(tenantId, 'one-too-many'), now, {
          beforeInsert: async (trx) => void (await consumeRegistrationToken(trx, token, now)),
        }),
        (e) => isGatehouseError(e) && e.code === 'agent_limit_reached',
      );
      assert.equal(await peekRegistrationToken(s.ctx.db, token, now), tenantId, 'the token is still usable');
      const [first] = await listAgents(s.ctx.db, tenantId, { now, inactiveAfterMs: 1000 });
      await deleteAgent(s.ctx.db, tenantId, first!.id, now);
      await registerAgent(s.ctx.db, input(tenantId, 'replacement'), now, {
        beforeInsert: async (trx) => void (await consumeRegistrationToken(trx, token, now)),
      });
      await assert.rejects(peekRegistrationToken(s.ctx.db, token, now), (e) => isGatehouseError(e));
    } finally {
      await s.cleanup();
    }
  });
