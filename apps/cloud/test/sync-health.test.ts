/**
 * Sync health from the run records: no run yet, healthy, running, a failed last run, a run
 * stalled (no page for long), no success within three of the agent's full-sync intervals
 * (overdue), deletions held back. The admin API's overview and /sync/status carry it over real
 * HTTPS, and `gatehouse sync status` prints it and exits 1 on a problem.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { ADMIN_CLIENT_ID } from '../src/admin/index.ts';
import { main } from '../src/cli.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import {
  emptyCounts,
  finishSyncRunRecord,
  STALLED_AFTER_MS,
  startSyncRun,
  syncHealth,
  updateSyncRun,
} from '../src/store/sync-runs.ts';
import { createTenant } from '../src/store/tenants.ts';

let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
let tenantId: string;
let token: string;
const MIN = 60_000;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-sync-health-'));
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://localhost:0', logLevel: 'silent' },
    { env: {} },
  );
  f = pinnedFetch(cloud.caCert);
  const t = await createTenant(cloud.ctx, {
    name: 'Health',
    domain: 'health.example',
    admin: { upn: 'admin@health.example', password: 'Admin-Passw0rd!' },
  });
  tenantId = t.tenantId;
  const p = (await cloud.oidc.forTenant(tenantId))!;
  const client = (await p.provider.Client.find(ADMIN_CLIENT_ID))!;
  const grant = new p.provider.Grant({ accountId: t.adminUserId, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid');
  token = await new p.provider.AccessToken({
    accountId: t.adminUserId,
    client,
    grantId: await grant.save(),
    gty: 'authorization_code',
    scope: 'openid',
  }).save();
});

after(async () => {
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** A run that started `ago` ms before `now` and ended as `status` (or still runs). */
const run = async (
  now: number,
  ago: number,
  status: 'succeeded' | 'failed' | 'guarded' | 'running',
  opts: { intervalMinutes?: number; error?: string } = {},
) => {
  const id = `run-${++n}`;
  await startSyncRun(
    cloud.ctx.db,
    { tenantId, id, agentId: 'agent-1', intervalMinutes: opts.intervalMinutes },
    now - ago,
  );
  if (status === 'running')
    await updateSyncRun(cloud.ctx.db, tenantId, id, { pages: 1, counts: emptyCounts() }, now - ago);
  else await finishSyncRunRecord(cloud.ctx.db, tenantId, id, { status, error: opts.error }, now - ago + 1000);
  return id;
};
const state = async (now: number) => (await syncHealth(cloud.ctx.db, tenantId, now)).state;

test('each state of sync health, from the run records', async () => {
  const t0 = Date.now() - 1000 * MIN;
  assert.equal(await state(t0), 'never');
  await run(t0, 10 * MIN, 'succeeded', { intervalMinutes: 60 });
  assert.equal(await state(t0), 'ok');
  const h = await syncHealth(cloud.ctx.db, tenantId, t0);
  assert.equal(h.problem, false);
  assert.equal(h.overdueAfterMinutes, 180, 'three full-sync intervals');
  assert.equal(await state(t0 + 170 * MIN), 'ok');
  assert.equal(await state(t0 + 200 * MIN), 'overdue', 'no success within 3 × 60 minutes');

  const t1 = t0 + 10 * MIN;
  await run(t1, 1 * MIN, 'running', { intervalMinutes: 60 });
  assert.equal(await state(t1), 'running');
  assert.equal(
    await state(t1 + STALLED_AFTER_MS + MIN),
    'stalled',
    'no page for longer than the stall limit',
  );

  const t2 = t1 + 10 * MIN;
  await run(t2, 1 * MIN, 'failed', { intervalMinutes: 60, error: 'page 3 could not be applied' });
  const failed = await syncHealth(cloud.ctx.db, tenantId, t2);
  assert.equal(failed.state, 'failed');
  assert.equal(failed.problem, true);
  assert.match(failed.message, /page 3 could not be applied/);

  const t3 = t2 + 10 * MIN;
  await run(t3, 1 * MIN, 'guarded', { intervalMinutes: 5, error: 'deletions held back' });
  assert.equal(await state(t3), 'guarded');
  assert.equal(await state(t3 + 20 * MIN), 'overdue', "the agent's own interval (5 minutes) counts");
  await run(t3 + 30 * MIN, 0, 'succeeded', { intervalMinutes: 5 });
  assert.equal(await state(t3 + 31 * MIN), 'ok');
});

test('the overview, /sync/status and the CLI say a failed sync; exit 1 on a problem', async () => {
  await run(Date.now(), 1000, 'failed', {
    intervalMinutes: 60,
    error: 'the agent disconnected during the run',
  });
  const api = (path: string) =>
    f(`${cloud.url}/${tenantId}/api/v1${path}`, { headers: { authorization: `Bearer ${token}` } });
  const overview = (await (await api('/overview')).json()) as { sync: { state: string; problem: boolean } };
  assert.equal(overview.sync.state, 'failed');
  assert.equal(overview.sync.problem, true);
  const status = (await (await api('/sync/status')).json()) as { state: string; lastRun: { status: string } };
  assert.equal(status.state, 'failed');
  assert.equal(status.lastRun.status, 'failed');

  const out: string[] = [];
  const io = {
    stdout: (s: string) => void out.push(s),
    stderr: (s: string) => void out.push(s),
    readStdin: async () => '',
  };
  const env = { GATEHOUSE_CLOUD_DATA_DIR: dir, GATEHOUSE_CLOUD_LOG_LEVEL: 'silent' };
  assert.equal(await main(['sync', 'status', '--tenant', tenantId], io, env), 1);
  assert.match(out.join(''), /sync: failed: The last sync run failed: the agent disconnected/);
  await run(Date.now(), 500, 'succeeded', { intervalMinutes: 60 });
  assert.equal(await main(['sync', 'status', '--tenant', tenantId, '--json'], io, env), 0);
  assert.equal((JSON.parse(out.pop()!) as { state: string }).state, 'ok');
});
