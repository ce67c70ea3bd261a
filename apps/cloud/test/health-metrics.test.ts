/**
 * Health and the metrics listener, with the real parts: /readyz answers 503 while the node drains
 * (it keeps serving for drainDelayMs); /metrics wants the bearer token when one is configured and
 * never logs it; the listener's port follows the configuration. With PostgreSQL and NATS:
 * health-metrics.int.test.ts.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isGatehouseError } from '@gatehouse/protocol';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { parseScrape } from '../../../test/harness/prometheus.ts';
import { DEFAULT_METRICS_PORT, loadCloudConfig } from '../src/config.ts';
import { dir, probe, start } from './health-fixtures.ts';

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
