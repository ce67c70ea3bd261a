/**
 * Group sync over the agent channel and the run records: group pages become groups, users' group
 * anchors become memberships (changed, not rewritten), groups that vanish are deleted behind the
 * same accidental-deletion guard as users, and every run keeps a record with its counts, its
 * agent and DC, its progress and how it ended.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { SyncedGroup, SyncedUser } from '@gatehouse/protocol';
import { syncRuns } from '../src/metrics/families.ts';
import { groupsOfUser, listGroups } from '../src/store/groups.ts';
import { getSyncRun, listSyncRuns, STALLED_AFTER_MS, startSyncRun } from '../src/store/sync-runs.ts';
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
let agentId: string;
before(async () => {
  env = await startEnv();
  agent = await connectAgent(env, await registerAgent(env));
  agentId = (await env.gateway.connections())[0]!.agentId;
});
after(async () => {
  agent.close();
  await env.close();
});

const group = (i: number, over: Partial<SyncedGroup> = {}): SyncedGroup => ({
  anchor: `g-${i}`,
  name: `Group ${i}`,
  onPremName: `CONTOSO\\group${i}`,
  sid: `S-1-5-21-1-2-3-${1100 + i}`,
  dn: `CN=Group ${i},OU=Groups,DC=contoso,DC=example`,
  security: i % 2 === 0,
  ...over,
});
const user = (i: number, groups?: string[]): SyncedUser => ({
  anchor: `u-${i}`,
  upn: `user${i}@contoso.example`,
  dn: `CN=User ${i},OU=Staff,DC=contoso,DC=example`,
  enabled: true,
  ...(groups ? { groups } : {}),
});
const page = (runId: string, seq: number, over: Record<string, unknown>) => ({
  type: 'sync.page' as const,
  runId,
  mode: 'full' as const,
  seq,
  withGroups: true,
  users: [],
  final: false,
  ...over,
});
const userId = async (i: number) =>
  (
    await env.ctx.db
      .selectFrom('users')
      .select('id')
      .where('tenant_id', '=', env.tenantId)
      .where('source_anchor', '=', `u-${i}`)
      .executeTakeFirstOrThrow()
  ).id;
const namesOf = async (i: number) =>
  (await groupsOfUser(env.ctx.db, env.tenantId, await userId(i))).map((g) => g.name);

test('groups, then users naming them: memberships, counts and a run record with agent and DC', async () => {
  const groups = Array.from({ length: 10 }, (_, i) => group(i));
  agent.send(
    page('g-run-1', 0, { total: 3, server: 'ldap://dc1.contoso.example', groups: groups.slice(0, 6) }),
  );
  await agent.next('sync.ack');
  const running = (await getSyncRun(env.ctx.db, env.tenantId, 'g-run-1'))!;
  assert.equal(running.status, 'running');
  assert.equal(running.pages, 1, 'progress: one page so far');
  assert.equal(running.totalPages, 3);
  assert.equal(running.server, 'ldap://dc1.contoso.example');
  assert.equal(running.agentId, agentId);
  agent.send(page('g-run-1', 1, { groups: groups.slice(6) }));
  await agent.next('sync.ack');
  agent.send(
    page('g-run-1', 2, {
      users: [user(1, ['g-0', 'g-1', 'g-unknown']), user(2, ['g-2']), user(3, [])],
      final: true,
    }),
  );
  const ack = await agent.next('sync.ack');
  assert.deepEqual(ack.summary!.groups, { created: 10, updated: 0, deleted: 0 });
  assert.deepEqual(await namesOf(1), ['Group 0', 'Group 1'], 'an anchor the cloud does not know is ignored');
  assert.deepEqual(await namesOf(2), ['Group 2']);
  assert.deepEqual(await namesOf(3), []);
  const run = (await getSyncRun(env.ctx.db, env.tenantId, 'g-run-1'))!;
  assert.equal(run.status, 'succeeded');
  assert.equal(run.pages, 3);
  assert.ok(run.finishedAt! >= run.startedAt);
  assert.deepEqual(
    { ...run.counts },
    {
      usersSeen: 3,
      usersAdded: 3,
      usersUpdated: 0,
      usersDeleted: 0,
      groupsSeen: 10,
      groupsAdded: 10,
      groupsUpdated: 0,
      groupsDeleted: 0,
      membershipsChanged: 2,
      skipped: 0,
    },
  );
  const listed = await listGroups(env.ctx.db, env.tenantId, { search: 'group 1' });
  assert.deepEqual(
    listed.groups.map((g) => [g.name, g.members, g.onPremSid]),
    [['Group 1', 1, 'S-1-5-21-1-2-3-1101']],
  );
});

test('a second run: a renamed group, a membership moved, a group gone; unchanged ones are not rewritten', async () => {
  const groups = Array.from({ length: 9 }, (_, i) => group(i, i === 3 ? { name: 'Renamed' } : {}));
  agent.send(page('g-run-2', 0, { groups }));
  await agent.next('sync.ack');
  agent.send(
    page('g-run-2', 1, { users: [user(1, ['g-0', 'g-1']), user(2, ['g-3']), user(3, [])], final: true }),
  );
  const ack = await agent.next('sync.ack');
  assert.deepEqual(ack.summary!.groups, { created: 0, updated: 1, deleted: 1 });
  assert.deepEqual(await namesOf(2), ['Renamed']);
  const run = (await getSyncRun(env.ctx.db, env.tenantId, 'g-run-2'))!;
  assert.equal(run.counts.membershipsChanged, 1, 'only user 2 changed');
  assert.equal(run.counts.usersUpdated, 0);
});

test('more groups vanishing than the threshold are held back, and the run says guarded', async () => {
  agent.send(page('g-run-3', 0, { groups: [group(0)] }));
  await agent.next('sync.ack');
  agent.send(page('g-run-3', 1, { users: [user(1, ['g-0']), user(2, []), user(3, [])], final: true }));
  const ack = await agent.next('sync.ack');
  assert.equal(ack.summary!.deletionGuarded, true);
  assert.equal(ack.summary!.groups!.deleted, 0);
  assert.equal((await listGroups(env.ctx.db, env.tenantId)).groups.length, 9, 'no group deleted');
  const run = (await getSyncRun(env.ctx.db, env.tenantId, 'g-run-3'))!;
  assert.equal(run.status, 'guarded');
  assert.match(run.error!, /groups/);
});

test('a run without groups (an agent that does not sync them) leaves groups and memberships alone', async () => {
  agent.send({
    type: 'sync.page',
    runId: 'g-run-4',
    mode: 'full',
    seq: 0,
    users: [user(1), user(2), user(3)],
    final: true,
  });
  const ack = await agent.next('sync.ack');
  assert.equal(ack.summary!.groups, undefined);
  assert.equal((await listGroups(env.ctx.db, env.tenantId)).groups.length, 9);
  // As the guarded run left them: its memberships were applied, only deletions were held back.
  assert.deepEqual(await namesOf(1), ['Group 0']);
});

test('a run cut off (out of order, abandoned, disconnected) is recorded as failed; runs list newest first', async () => {
  agent.send(page('g-run-5', 0, { groups: [group(0)] }));
  await agent.next('sync.ack');
  agent.send(page('g-run-5', 3, { final: true }));
  assert.equal((await agent.next('error')).code, 'protocol_error');
  assert.equal((await getSyncRun(env.ctx.db, env.tenantId, 'g-run-5'))!.status, 'failed');

  agent.send(page('g-run-6', 0, { groups: [group(0)] }));
  await agent.next('sync.ack');
  agent.close();
  await waitFor(
    async () => (await getSyncRun(env.ctx.db, env.tenantId, 'g-run-6'))?.status === 'failed',
    10_000,
    'the run to be failed',
  );
  assert.match((await getSyncRun(env.ctx.db, env.tenantId, 'g-run-6'))!.error!, /disconnected/);
  const runs = await listSyncRuns(env.ctx.db, env.tenantId, { limit: 10 });
  assert.deepEqual(
    runs.map((r) => [r.id, r.status]),
    [
      ['g-run-6', 'failed'],
      ['g-run-5', 'failed'],
      ['g-run-4', 'succeeded'],
      ['g-run-3', 'guarded'],
      ['g-run-2', 'succeeded'],
      ['g-run-1', 'succeeded'],
    ],
  );
  // A run whose agent went quiet shows as stalled without anyone finishing it.
  await startSyncRun(env.ctx.db, { tenantId: env.tenantId, id: 'g-run-7', agentId }, Date.now());
  assert.equal((await getSyncRun(env.ctx.db, env.tenantId, 'g-run-7'))!.status, 'running');
  const later = Date.now() + STALLED_AFTER_MS + 1000;
  assert.equal((await getSyncRun(env.ctx.db, env.tenantId, 'g-run-7', later))!.status, 'stalled');
});

test("a delta run replaces the named groups' memberships at its end, joining parts across pages", async () => {
  agent = await connectAgent(env, await registerAgent(env));
  const delta = (runId: string, seq: number, over: Record<string, unknown>) =>
    page(runId, seq, { mode: 'delta', ...over });
  agent.send(
    delta('d-run-1', 0, {
      groups: [group(50), group(51)],
      users: [user(50), user(51), user(52)],
    }),
  );
  await agent.next('sync.ack');
  agent.send(delta('d-run-1', 1, { groupMembers: [{ group: 'g-50', users: ['u-50'] }] }));
  await agent.next('sync.ack');
  assert.deepEqual(await namesOf(50), [], 'nothing is applied before the run is whole');
  agent.send(
    delta('d-run-1', 2, {
      groupMembers: [
        { group: 'g-50', users: ['u-51', 'u-unknown'] },
        { group: 'g-51', users: [] },
        { group: 'g-unknown', users: ['u-50'] },
      ],
      final: true,
    }),
  );
  await agent.next('sync.ack');
  assert.deepEqual(await namesOf(50), ['Group 50'], 'the first part of the list counts too');
  assert.deepEqual(await namesOf(51), ['Group 50']);
  assert.deepEqual(await namesOf(52), []);
  const run = (await getSyncRun(env.ctx.db, env.tenantId, 'd-run-1'))!;
  assert.equal(run.mode, 'delta');
  assert.equal(run.status, 'succeeded');
  assert.equal(run.counts.membershipsChanged, 2);
  assert.equal(run.counts.groupsDeleted, 0, 'a delta deletes no group by absence');

  // Who is not listed left; groups not named are left alone.
  agent.send(
    delta('d-run-2', 0, { groupMembers: [{ group: 'g-50', users: ['u-51', 'u-52'] }], final: true }),
  );
  await agent.next('sync.ack');
  assert.deepEqual(await namesOf(50), []);
  assert.deepEqual(await namesOf(51), ['Group 50']);
  assert.deepEqual(await namesOf(52), ['Group 50']);
  assert.equal((await getSyncRun(env.ctx.db, env.tenantId, 'd-run-2'))!.counts.membershipsChanged, 2);
  const applied = (await syncRuns.get()).values.filter((v) => v.labels.result === 'applied');
  assert.equal(applied.find((v) => v.labels.mode === 'delta')?.value, 2, 'the metric says delta');
  assert.ok((applied.find((v) => v.labels.mode === 'full')?.value ?? 0) >= 2);
  assert.equal((await listGroups(env.ctx.db, env.tenantId, { search: 'group 51' })).groups.length, 1, 'kept');
});
