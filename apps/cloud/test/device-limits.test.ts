/**
 * Device authorization is unauthenticated, so it is limited: per client address, per tenant, and
 * by the tenant's codes awaiting a decision. Requests come from distinct loopback addresses
 * (127.0.0.0/8 is all loopback on Linux), so each limit is reached on its own, over real HTTPS.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, test } from 'node:test';
import { catalog } from '@gatehouse/protocol';
import { DEVICE_CODE_TTL_S } from '../src/gateway/device-flow.ts';
import { DEVICE_LIMITS } from '../src/gateway/device-limits.ts';
import { createTenant } from '../src/store/tenants.ts';
import { type Env, startEnv } from './gateway-harness.ts';

let env: Env;
before(async () => {
  env = await startEnv();
});
after(() => env.close());

interface Answer {
  status: number;
  retryAfter?: string;
  body: { error?: string; message?: string; detail?: { limit?: string }; user_code?: string };
}

/** POST /agent/v1/device/authorize from a chosen loopback address. */
const authorizeFrom = (from: string, body: unknown): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(
      `${env.appUrl}/agent/v1/device/authorize`,
      {
        method: 'POST',
        ca: env.ctx.tls.caCert,
        localAddress: from,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'] as string | undefined,
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });

/** Codes issued for env's tenant so far (the node's per-tenant window counts them all). */
let issued = 0;
const count = (a: Answer) => {
  if (a.status === 200) issued++;
  return a;
};

let next = 10;
/** A fresh loopback address: no address limit gets in the way of the tenant limits. */
const fresh = () => `127.0.0.${next++}`;

const assertLimited = (a: Answer, limit: string) => {
  assert.equal(a.status, 429, JSON.stringify(a.body));
  assert.equal(a.body.error, 'rate_limited');
  assert.equal(a.body.message, catalog.rate_limited.message);
  assert.equal(a.body.detail?.limit, limit);
  const s = Number(a.retryAfter);
  assert.ok(Number.isInteger(s) && s >= 1 && s <= DEVICE_CODE_TTL_S, `Retry-After ${a.retryAfter}`);
  return s;
};

test('per address: every request counts, even a malformed one; other addresses are still served', async () => {
  const from = fresh();
  for (let i = 0; i < DEVICE_LIMITS.perAddress; i++) {
    assert.equal((await authorizeFrom(from, { junk: i })).body.error, 'validation_failed');
  }
  const s = assertLimited(await authorizeFrom(from, { tenantId: env.tenantId, hostname: 'h' }), 'address');
  assert.ok(s > DEVICE_LIMITS.windowMs / 1000 - 60, 'Retry-After is the rest of the window');
  const other = count(await authorizeFrom(fresh(), { tenantId: env.tenantId, hostname: 'h' }));
  assert.equal(other.status, 200);
  await env.ctx.db.deleteFrom('device_codes').execute();
});

test('per tenant: pending codes are capped; a decided or expired one frees its place', async () => {
  const ask = async () =>
    count(await authorizeFrom(fresh(), { tenantId: env.tenantId, hostname: 'dc.contoso.example' }));
  const codes: string[] = [];
  for (let i = 0; i < DEVICE_LIMITS.pendingPerTenant; i++) {
    const a = await ask();
    assert.equal(a.status, 200, JSON.stringify(a.body));
    codes.push(a.body.user_code!);
  }
  const s = assertLimited(await ask(), 'pending');
  assert.ok(s > DEVICE_CODE_TTL_S - 60, 'Retry-After: until the first pending code lapses');

  // Another tenant is not affected.
  const other = await createTenant(env.ctx, {
    name: 'Fabrikam',
    domain: 'fabrikam.example',
    admin: { upn: 'admin@fabrikam.example', password: 'Fabrikam-Pa55word-1' },
  });
  assert.equal((await authorizeFrom(fresh(), { tenantId: other.tenantId, hostname: 'h' })).status, 200);

  await env.ctx.db
    .updateTable('device_codes')
    .set({ status: 'denied' })
    .where('user_code', '=', codes[0]!)
    .execute();
  assert.equal((await ask()).status, 200, 'a denied code no longer counts');
  assertLimited(await ask(), 'pending');
  await env.ctx.db
    .updateTable('device_codes')
    .set({ expires_at: Date.now() - 1 })
    .where('user_code', '=', codes[1]!)
    .execute();
  assert.equal((await ask()).status, 200, 'an expired code no longer counts');
});

test('per tenant: codes issued in a window are limited even when each is decided at once', async () => {
  const ask = async () =>
    count(await authorizeFrom(fresh(), { tenantId: env.tenantId, hostname: 'dc.contoso.example' }));
  await env.ctx.db.updateTable('device_codes').set({ status: 'denied' }).execute();
  while (issued < DEVICE_LIMITS.perTenant) {
    const a = await ask();
    assert.equal(a.status, 200, `code ${issued}: ${JSON.stringify(a.body)}`);
    await env.ctx.db.updateTable('device_codes').set({ status: 'denied' }).execute();
  }
  assertLimited(await ask(), 'tenant');
});
