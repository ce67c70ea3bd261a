/**
 * The HTTPS app around the parts: health, metrics, catalog-shaped errors, and logs that never
 * carry a secret from a query string.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { redactUrl } from '../src/http/logger.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { csrfToken, csrfValid } from '../src/web/csrf.ts';
import { errorBody, oauthErrorBody, toGatehouseError } from '../src/web/errors.ts';

let dir: string;
let cloud: RunningCloud;
let f: typeof fetch;
const logs: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-http-'));
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://localhost:0', logLevel: 'info' },
    { env: {}, logDestination: sink },
  );
  f = pinnedFetch(cloud.caCert);
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('serves HTTPS with the service certificate, on the port it reports', async () => {
  assert.match(cloud.url, /^https:\/\/localhost:\d+$/);
  assert.match(cloud.gatewayUrl, /^wss:\/\/localhost:\d+$/);
  assert.notEqual(new URL(cloud.gatewayUrl).port, '0');
  const res = await f(`${cloud.url}/healthz`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: 'ok' });
  // Another CA is not trusted: pinning is real.
  const other = await import('@gatehouse/protocol').then((p) => p.createCa('other', 1));
  await assert.rejects(pinnedFetch(other.certPem)(`${cloud.url}/healthz`));
  // The server is bound before fastify is built (listeners.ts): fastify's keep-alive still holds.
  assert.equal(cloud.app.server.keepAliveTimeout, 72_000);
  assert.equal(new URL(cloud.url).port, String((cloud.app.server.address() as { port: number }).port));
});

test('/metrics is not on the public port; the metrics listener serves it, with the health routes', async () => {
  const pub = await f(`${cloud.url}/metrics`);
  assert.equal(pub.status, 404);
  assert.deepEqual(await pub.json(), { error: 'not_found', message: 'Not found.' });
  // Port 0 for the cloud: its metrics listener took a free port too, on loopback.
  assert.match(String(cloud.metricsUrl), /^https:\/\/127\.0\.0\.1:\d+$/);
  const res = await f(`${cloud.metricsUrl}/metrics`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers.get('content-type')), /^text\/plain/);
  const text = await res.text();
  assert.match(text, /process_cpu_seconds_total/);
  assert.match(text, /gatehouse_process_failures_total/, 'the process policy counter is still there');
  for (const base of [cloud.url, String(cloud.metricsUrl)]) {
    assert.deepEqual(await (await f(`${base}/livez`)).json(), { status: 'ok' });
    const ready = await f(`${base}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), {
      status: 'ok',
      checks: { database: 'ok', migrations: 'ok', draining: false },
    });
  }
});

test('unknown routes answer not_found in the catalog format', async () => {
  const res = await f(`${cloud.url}/nothing/here`);
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), { error: 'not_found', message: 'Not found.' });
});

test('errors map to the catalog', () => {
  const zodErr = z.object({ a: z.string() }).safeParse({}).error;
  const v = toGatehouseError(zodErr);
  assert.equal(v.code, 'validation_failed');
  assert.equal(v.entry.status, 400);
  assert.ok(Array.isArray(v.detail));
  assert.equal(toGatehouseError(new GatehouseError('forbidden')).code, 'forbidden');
  assert.equal(
    toGatehouseError(Object.assign(new Error('bad json'), { statusCode: 400 })).code,
    'validation_failed',
  );
  assert.equal(toGatehouseError(new Error('boom')).code, 'internal_error');
});

test('an error the catalog does not let users see leaves with the generic message and no detail', () => {
  const hidden = new GatehouseError('config_invalid', { path: '/etc/gatehouse/cloud.json' });
  assert.deepEqual(errorBody(hidden), { error: 'config_invalid', message: 'Something went wrong.' });
  const shown = new GatehouseError('forbidden', { reason: 'no administrator role' });
  assert.deepEqual(errorBody(shown), { error: 'forbidden', message: shown.message, detail: shown.detail });
  assert.deepEqual(errorBody(shown, { withDetail: false }), { error: 'forbidden', message: shown.message });
  // The token endpoint keeps RFC 6749's shape and follows the same flag.
  assert.deepEqual(oauthErrorBody('config_invalid').body, {
    error: 'server_error',
    error_description: 'Something went wrong.',
    error_code: 'config_invalid',
  });
  assert.equal(oauthErrorBody('no_agent').retryAfter, 5);
});

test('a form token is good only for what it is bound to, and only as a string', () => {
  const t = csrfToken('key', 'interaction-1');
  assert.ok(csrfValid('key', 'interaction-1', t));
  assert.ok(!csrfValid('key', 'interaction-2', t));
  assert.ok(!csrfValid('other key', 'interaction-1', t));
  assert.ok(!csrfValid('key', undefined, t), 'no nonce cookie, no valid token');
  assert.ok(!csrfValid('key', 'interaction-1', [t]));
  assert.ok(!csrfValid('key', 'interaction-1', t.slice(1)));
});

test('request logs redact secrets in query strings', async () => {
  const secret = 'Sekret-in-query-42';
  await f(`${cloud.url}/nothing?password=${secret}&client_secret=${secret}&x=1`);
  assert.ok(
    logs.some((l) => l.includes('/nothing?')),
    'the request was logged',
  );
  assert.ok(!logs.some((l) => l.includes(secret)));
  assert.equal(redactUrl('/a?code=abc&state=s'), '/a?code=redacted&state=s');
  assert.equal(redactUrl('/a'), '/a');
});
