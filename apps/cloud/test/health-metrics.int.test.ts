/**
 * Health with services: /readyz answers 503 when the node's PostgreSQL database is gone, and while
 * its NATS server is down (and 200 again once NATS is back).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { test } from 'node:test';
import { freePort, waitFor } from '../../../test/harness/children.ts';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { parseScrape } from '../../../test/harness/prometheus.ts';
import { probe, start } from './health-fixtures.ts';

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
