/**
 * Health and the metrics listener, with the real parts: /readyz answers 503 while the node drains
 * (it keeps serving for drainDelayMs), when its PostgreSQL database is gone, and while its NATS
 * server is down (and 200 again once NATS is back); /metrics wants the bearer token when one is
 * configured and never logs it; the listener's port follows the configuration.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isGatehouseError } from '@gatehouse/protocol';
import { freePort, waitFor } from '../../../test/harness/children.ts';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { parseScrape } from '../../../test/harness/prometheus.ts';
import { DEFAULT_METRICS_PORT, loadCloudConfig } from '../src/config.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'gh-health-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const start = (overrides: Record<string, unknown> = {}, logs?: string[]) =>
  startCloud(
    {
      dataDir: join(dir, Math.random().toString(36).slice(2)),
      port: 0,
      gatewayPort: 0,
      logLevel: 'info',
      ...overrides,
    },
    { env: {}, logDestination: { write: (s: string) => void logs?.push(s) } },
  );

const probe = async (cloud: RunningCloud, base = cloud.url) => {
  const res = await pinnedFetch(cloud.caCert)(`${base}/readyz`);
  return {
    status: res.status,
    body: (await res.json()) as { status: string; checks: Record<string, unknown> },
  };
};

test('metricsPort: 9464 by default, any free port when port is 0, off for none', async () => {
  assert.equal(loadCloudConfig({}, { port: 8443 }).metricsPort, DEFAULT_METRICS_PORT);
  assert.equal(loadCloudConfig({}, { port: 0 }).metricsPort, 0);
  assert.equal(loadCloudConfig({ GATEHOUSE_CLOUD_METRICS_PORT: 'off' }).metricsPort, 'off');
  assert.equal(loadCloudConfig({ GATEHOUSE_CLOUD_METRICS_PORT: '9100' }).metricsPort, 9100);
  assert.throws(() => loadCloudConfig({ GATEHOUSE_CLOUD_METRICS_PORT: 'none' }), { code: 'config_invalid' });
  const off = await start({ metricsPort: 'off' });
  try {
    assert.equal(off.metricsUrl, undefined);
    assert.equal((await pinnedFetch(off.caCert)(`${off.url}/metrics`)).status, 404);
    // Health stays on the public port, where balancers probe.
    assert.equal((await probe(off)).status, 200);
  } finally {
    await off.stop();
  }
});

test('with metricsTokenFile, /metrics wants the bearer token; health does not; the token is never logged', async () => {
  const token = `mt-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
  const file = join(dir, 'metrics-token');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  const logs: string[] = [];
  const cloud = await start({ metricsTokenFile: file }, logs);
  try {
    const f = pinnedFetch(cloud.caCert);
    const get = (auth?: string) =>
      f(`${cloud.metricsUrl}/metrics`, auth ? { headers: { authorization: auth } } : {});
    const none = await get();
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.equal((await none.json()).error, 'unauthorized');
    assert.equal((await get(`Bearer ${token}x`)).status, 401);
    assert.equal((await get(`Basic ${token}`)).status, 401);
    const ok = await get(`Bearer ${token}`);
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /gatehouse_signins_total/);
    assert.equal((await f(`${cloud.metricsUrl}/readyz`)).status, 200);
    assert.equal((await f(`${cloud.metricsUrl}/livez`)).status, 200);
  } finally {
    await cloud.stop();
  }
  assert.ok(logs.length > 0);
  assert.ok(!logs.join('').includes(token), 'the token is not in the log');

  writeFileSync(file, 'short');
  await assert.rejects(start({ metricsTokenFile: file }), (err) => {
    assert.ok(isGatehouseError(err) && err.code === 'config_invalid');
    assert.match(JSON.stringify(err.detail), /metricsTokenFile/);
    return true;
  });
});

test('draining: /readyz answers 503 for drainDelayMs while the node still serves, then the port closes', async () => {
  const cloud = await start({ drainDelayMs: 2_500 });
  const f = pinnedFetch(cloud.caCert);
  assert.equal((await probe(cloud)).status, 200);
  const stopping = cloud.stop();
  try {
    for (const base of [cloud.url, String(cloud.metricsUrl)]) {
      const r = await probe(cloud, base);
      assert.equal(r.status, 503);
      assert.equal(r.body.status, 'draining');
      assert.equal(r.body.checks.draining, true);
      assert.equal((await f(`${base}/livez`)).status, 200, 'the process still answers');
    }
    // Traffic the balancer has not moved yet is still served.
    const res = await f(`${cloud.url}/.well-known/nothing`);
    assert.equal(res.status, 404);
    assert.equal((await f(`${cloud.url}/healthz`)).status, 503);
    const s = parseScrape(await (await f(`${cloud.metricsUrl}/metrics`)).text());
    assert.equal(s.value('gatehouse_ready'), 0);
  } finally {
    await stopping;
  }
  await assert.rejects(f(`${cloud.url}/livez`), 'the port is closed after the drain');
});

test('PostgreSQL: /readyz answers 503 once the database is gone; the pool is on /metrics', async (t) => {
  const temp = await createTempDatabase();
  if (!temp) return t.skip('no PostgreSQL');
  const logs: string[] = [];
  const cloud = await start({ database: temp.url }, logs);
  try {
    const ok = await probe(cloud);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body.checks, { database: 'ok', migrations: 'ok', draining: false });
    const s = parseScrape(await (await pinnedFetch(cloud.caCert)(`${cloud.metricsUrl}/metrics`)).text());
    assert.ok(s.value('gatehouse_db_pool_connections', { state: 'total' }) >= 1);
    assert.ok(s.has('gatehouse_db_pool_connections', { state: 'waiting' }));
    await temp.drop(); // terminates the cloud's connections, then drops the database
    const gone = await waitFor('readiness to fail', async () => {
      const r = await probe(cloud);
      return r.status === 503 && r.body;
    });
    assert.deepEqual(gone.checks, { database: 'unreachable', migrations: 'unknown', draining: false });
    assert.equal(gone.status, 'unavailable');
    assert.match(logs.join(''), /readiness: the database does not answer/);
    assert.equal((await pinnedFetch(cloud.caCert)(`${cloud.url}/livez`)).status, 200);
  } finally {
    await cloud.stop();
    await temp.drop();
  }
});

const startNats = async (port: number): Promise<ChildProcess> => {
  const p = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  await waitFor('nats-server', async () => {
    if (p.exitCode !== null) throw new Error(`nats-server exited ${p.exitCode}`);
    const { connect } = await import('node:net');
    return new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      }).on('error', () => resolve(false));
    });
  });
  return p;
};

test('scale-out: /readyz answers 503 while NATS is down and 200 once it is back', async () => {
  const port = await freePort();
  let nats = await startNats(port);
  const cloud = await start({ natsUrl: `nats://127.0.0.1:${port}` });
  try {
    const f = pinnedFetch(cloud.caCert);
    const ok = await probe(cloud);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.checks.nats, 'ok');
    const up = parseScrape(await (await f(`${cloud.metricsUrl}/metrics`)).text());
    assert.equal(up.value('gatehouse_nats_connected'), 1);

    nats.kill('SIGKILL');
    await new Promise((r) => nats.once('exit', r));
    const down = await waitFor('readiness to see NATS gone', async () => {
      const r = await probe(cloud);
      return r.status === 503 && r.body;
    });
    assert.equal(down.checks.nats, 'disconnected');
    assert.equal(down.checks.database, 'ok');
    const s = parseScrape(await (await f(`${cloud.metricsUrl}/metrics`)).text());
    assert.equal(s.value('gatehouse_nats_connected'), 0);

    nats = await startNats(port);
    await waitFor('readiness to recover', async () => (await probe(cloud)).status === 200, 20_000);
  } finally {
    await cloud.stop();
    nats.kill('SIGKILL');
  }
});
