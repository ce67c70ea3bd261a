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
import { createTenant } from '../src/store/tenants.ts';
import { addRun, checkHealthStates } from './sync-health-fixtures.ts';

let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
let tenantId: string;
let token: string;

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

test('each state of sync health, from the run records', async () => {
  await checkHealthStates(cloud.ctx.db, tenantId);
});

test('the overview, /sync/status and the CLI say a failed sync; exit 1 on a problem', async () => {
  await addRun(cloud.ctx.db, tenantId, Date.now(), 1000, 'failed', {
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
  await addRun(cloud.ctx.db, tenantId, Date.now(), 500, 'succeeded', { intervalMinutes: 60 });
  assert.equal(await main(['sync', 'status', '--tenant', tenantId, '--json'], io, env), 0);
  assert.equal((JSON.parse(out.pop()!) as { state: string }).state, 'ok');
});
