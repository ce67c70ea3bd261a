/**
 * Directory sync over the agent channel: pages become users, the final page applies deletions.
 * This suite also runs with a short prune age (8.6 s) to watch the prune timer work.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { SyncedUser } from '@gatehouse/protocol';
import { listAudit } from '../src/store/audit.ts';
import { getSyncRun } from '../src/store/sync-runs.ts';
import {
  connectAgent,
  type Env,
  registerAgent,
  type ScriptedAgent,
  startEnv,
  waitFor,
} from './gateway-harness.ts';

let env: Env;
let agent: ScriptedAgent;
before(async () => {
  env = await startEnv({ pruneAfterDays: 0.0001 });
  agent = await connectAgent(env, await registerAgent(env));
});
after(async () => {
  agent.close();
  await env.close();
});

const user = (i: number, over: Partial<SyncedUser> = {}): SyncedUser => ({
  anchor: `guid-${i}`,
  upn: `user${i}@contoso.example`,
  dn: `CN=User ${i},OU=Staff,DC=contoso,DC=example`,
  displayName: `User ${i}`,
  mail: `user${i}@contoso.example`,
  enabled: true,
  ...over,
});

const synced = () =>
  env.ctx.db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', env.tenantId)
    .where('source', '=', 'synced')
    .orderBy('upn')
    .execute();

test('requestSync asks a connected agent; pages become users; the final page answers with a summary', async () => {
  assert.equal(env.gateway.requestSync(env.tenantId), (await env.gateway.connections())[0]!.agentId);
  assert.equal((await agent.next('sync.request')).mode, 'full');
  const all = Array.from({ length: 12 }, (_, i) => user(i));
  agent.send({
    type: 'sync.page',
    runId: 'run-1',
    mode: 'full',
    seq: 0,
    users: all.slice(0, 5),
    final: false,
  });
  agent.send({
    type: 'sync.page',
    runId: 'run-1',
    mode: 'full',
    seq: 1,
    users: all.slice(5, 10),
    final: false,
  });
  agent.send({ type: 'sync.page', runId: 'run-1', mode: 'full', seq: 2, users: all.slice(10), final: true });
  assert.deepEqual(await agent.next('sync.ack'), { type: 'sync.ack', runId: 'run-1', seq: 0 });
  assert.deepEqual(await agent.next('sync.ack'), { type: 'sync.ack', runId: 'run-1', seq: 1 });
  const last = await agent.next('sync.ack');
  assert.deepEqual(last.summary, { created: 12, updated: 0, deleted: 0, skipped: 0, deletionGuarded: false });
  const rows = await synced();
  assert.equal(rows.length, 12);
  const u3 = rows.find((r) => r.source_anchor === 'guid-3')!;
  assert.equal(u3.upn, 'user3@contoso.example');
  assert.equal(u3.on_prem_dn, 'CN=User 3,OU=Staff,DC=contoso,DC=example');
  assert.equal(u3.password_hash, null);
  const audit = await listAudit(env.ctx.db, env.tenantId);
  assert.ok(audit.some((a) => a.action === 'sync.run' && a.target === 'run-1'));
});

test('a second run updates, deletes what vanished, and the guard stops mass deletion', async () => {
  const keep = Array.from({ length: 11 }, (_, i) => user(i));
  keep[0] = user(0, { displayName: 'Renamed', enabled: false });
  agent.send({ type: 'sync.page', runId: 'run-2', mode: 'full', seq: 0, users: keep, final: true });
  const ack = await agent.next('sync.ack');
  assert.deepEqual(ack.summary, { created: 0, updated: 1, deleted: 1, skipped: 0, deletionGuarded: false });
  const rows = await synced();
  assert.equal(rows.length, 11);
  assert.equal(rows.find((r) => r.source_anchor === 'guid-0')!.enabled, 0);
  // An OU filter gone wrong: only two users seen. Deleting nine of eleven is refused.
  agent.send({
    type: 'sync.page',
    runId: 'run-3',
    mode: 'full',
    seq: 0,
    users: keep.slice(0, 2),
    final: true,
  });
  const guarded = await agent.next('sync.ack');
  assert.equal(guarded.summary!.deletionGuarded, true);
  assert.equal(guarded.summary!.deleted, 0);
  assert.equal((await synced()).length, 11);
});

test('a UPN held by the cloud administrator is skipped, never taken over', async () => {
  agent.send({
    type: 'sync.page',
    runId: 'run-4',
    mode: 'full',
    seq: 0,
    users: [...Array.from({ length: 11 }, (_, i) => user(i)), user(99, { upn: env.adminUpn })],
    final: true,
  });
  const ack = await agent.next('sync.ack');
  assert.equal(ack.summary!.skipped, 1);
  const admin = await env.ctx.db
    .selectFrom('users')
    .selectAll()
    .where('upn', '=', env.adminUpn)
    .executeTakeFirstOrThrow();
  assert.equal(admin.source, 'cloud');
});

test('out-of-order pages are refused with protocol_error', async () => {
  agent.send({ type: 'sync.page', runId: 'run-5', mode: 'full', seq: 0, users: [user(1)], final: false });
  await agent.next('sync.ack');
  agent.send({ type: 'sync.page', runId: 'run-5', mode: 'full', seq: 2, users: [user(2)], final: true });
  assert.equal((await agent.next('error')).code, 'protocol_error');
  assert.equal((await synced()).length, 11, 'nothing deleted by a broken run');
});

test('a delta run: only what it names is deleted (guarded too); disabled and deleted users lose their grants', async () => {
  const idOf = async (n: number) => (await synced()).find((r) => r.source_anchor === `guid-${n}`)!.id;
  const [one, two] = [await idOf(1), await idOf(2)];
  for (const [i, accountId] of [one, two].entries())
    await env.ctx.db
      .insertInto('oidc_payloads')
      .values({
        model: 'RefreshToken',
        id: `rt-${i}`,
        tenant_id: env.tenantId,
        payload: 'sealed',
        grant_id: null,
        user_code: null,
        uid: null,
        expires_at: null,
        consumed_at: null,
        account_id: accountId,
      })
      .execute();
  env.gateway.requestSync(env.tenantId, 'run-d', 'delta');
  assert.equal((await agent.next('sync.request')).mode, 'delta');
  agent.send({
    type: 'sync.page',
    runId: 'run-d',
    mode: 'delta',
    seq: 0,
    users: [user(1, { enabled: false }), user(20)],
    deletedUsers: ['guid-2', 'guid-unknown'],
    final: true,
  });
  const ack = await agent.next('sync.ack');
  assert.deepEqual(ack.summary, { created: 1, updated: 1, deleted: 1, skipped: 0, deletionGuarded: false });
  assert.equal((await synced()).length, 11, 'one added, one deleted, none by absence');
  const left = await env.ctx.db
    .selectFrom('oidc_payloads')
    .select('id')
    .where('tenant_id', '=', env.tenantId)
    .execute();
  assert.deepEqual(left, [], "the disabled and the deleted user's tokens are gone");
  const revoked = (await listAudit(env.ctx.db, env.tenantId)).filter(
    (e) => e.action === 'user.grants_revoked' && (e.detail as { runId?: string } | null)?.runId === 'run-d',
  );
  assert.deepEqual(new Set(revoked.map((e) => e.target)), new Set([one, two]));
  const run = (await getSyncRun(env.ctx.db, env.tenantId, 'run-d'))!;
  assert.equal(run.mode, 'delta');
  assert.equal(run.counts.usersDeleted, 1);
  // Explicit deletions are held to the threshold like a full run's absences.
  agent.send({
    type: 'sync.page',
    runId: 'run-d2',
    mode: 'delta',
    seq: 0,
    users: [],
    deletedUsers: ['guid-3', 'guid-4', 'guid-5'],
    final: true,
  });
  const guarded = await agent.next('sync.ack');
  assert.equal(guarded.summary!.deletionGuarded, true);
  assert.equal((await synced()).length, 11);
});

test('requestSync with no connected agent returns null', () => {
  assert.equal(env.gateway.requestSync('no-such-tenant'), null);
});

test('the prune timer removes agents silent for longer than pruneAfterDays, not live ones', async () => {
  const old = Date.now() - 86_400_000;
  const row = {
    tenant_id: env.tenantId,
    hostname: 'gone',
    version: '0',
    cert_serial: '01',
    cert_not_after: old,
    hpke_public_key: 'x',
  };
  await env.ctx.db
    .insertInto('agents')
    .values([
      { ...row, id: 'stale-agent', last_seen_at: old, created_at: old, deleted_at: null },
      { ...row, id: 'deleted-agent', last_seen_at: null, created_at: old, deleted_at: old },
    ])
    .execute();
  const ids = async () => (await env.ctx.db.selectFrom('agents').select('id').execute()).map((r) => r.id);
  await waitFor(async () => !(await ids()).includes('stale-agent'), 5000, 'stale agent pruned');
  assert.ok(!(await ids()).includes('deleted-agent'));
  const live = env.gateway.connections()[0]!.agentId;
  assert.ok((await ids()).includes(live), 'the heartbeating agent stays');
});
