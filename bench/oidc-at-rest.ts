/**
 * What keeping OIDC rows unreadable costs (db/at-rest.ts): the keyed hash of the id and the sealing
 * of the payload alone, and a token's whole write + read through the real adapter on a SQLite
 * file, for scale. Also the client secret check (SHA-256 + constant-time compare).
 * `npx node bench/oidc-at-rest.ts [N]`
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { AdapterPayload } from 'oidc-provider';
import {
  clientSecretMatches,
  hashClientSecret,
  oidcKeys,
  openOidcPayload,
  sealOidcPayload,
} from '../apps/cloud/src/db/at-rest.ts';
import { openDb } from '../apps/cloud/src/db/index.ts';
import { createAdapterFactory } from '../apps/cloud/src/oidc/adapter.ts';
import { createSecretBox } from '../apps/cloud/src/secrets.ts';

const n = Number(process.argv[2] ?? 20_000);
const box = createSecretBox(randomBytes(32));
const keys = oidcKeys(box);
// The shape and size of a real access token's payload (password grant, three scopes).
const payload = (jti: string): AdapterPayload => ({
  iat: 1_800_000_000,
  exp: 1_800_003_600,
  accountId: randomBytes(16).toString('hex'),
  expiresWithSession: false,
  grantId: randomBytes(32).toString('base64url'),
  gty: 'password',
  scope: 'openid profile offline_access',
  sessionUid: randomBytes(16).toString('base64url'),
  kind: 'AccessToken',
  jti,
  clientId: '1f0c3a4e-0b7e-4d53-9d0e-6a1f5c2b9e11',
});

const perOp = (t0: number, count = n) => `${(((performance.now() - t0) / count) * 1000).toFixed(1)} µs`;
const ids = Array.from({ length: n }, () => randomBytes(32).toString('base64url'));
const payloads = new Map(ids.map((id) => [id, payload(id)]));

let t0 = performance.now();
for (const id of ids) {
  const hashedId = keys.id(id);
  const where = { tenantId: 't', model: 'AccessToken', hashedId };
  openOidcPayload(box, where, sealOidcPayload(box, where, payloads.get(id)!));
  keys.grantId(id);
}
process.stdout.write(`hash id + grant id, seal and open the payload: ${perOp(t0)} per token\n`);

const dir = mkdtempSync(join(tmpdir(), 'gh-bench-at-rest-'));
try {
  const { db } = await openDb(`sqlite:${join(dir, 'db.sqlite')}`);
  const adapter = createAdapterFactory({
    db,
    secrets: box,
    tenantId: 't',
    now: Date.now,
    getClient: async () => null,
  })('AccessToken');
  // Interleaved, token by token, so the file's growth and the machine's load fall on both alike.
  const plain = async (id: string) => {
    const row = { payload: JSON.stringify(payloads.get(id)), grant_id: id, user_code: null, uid: null };
    const values = { model: 'Plain', id, tenant_id: 't', consumed_at: null, expires_at: Date.now() + 3.6e6 };
    await db
      .insertInto('oidc_payloads')
      .values({ ...values, ...row })
      .onConflict((oc) => oc.columns(['model', 'id']).doUpdateSet(row))
      .execute();
    const r = await db
      .selectFrom('oidc_payloads')
      .select(['payload', 'consumed_at'])
      .where('model', '=', 'Plain')
      .where('tenant_id', '=', 't')
      .where('id', '=', id)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', Date.now())]))
      .executeTakeFirst();
    JSON.parse(String(r?.payload));
  };
  let sealedMs = 0;
  let plainMs = 0;
  for (const id of ids) {
    let t = performance.now();
    await adapter.upsert(id, payloads.get(id)!, 3600);
    if (!(await adapter.find(id))) throw new Error('token not found again');
    sealedMs += performance.now() - t;
    t = performance.now();
    await plain(id);
    plainMs += performance.now() - t;
  }
  const us = (ms: number) => `${((ms / n) * 1000).toFixed(1)} µs`;
  process.stdout.write(
    `adapter upsert + find on SQLite (hashed ids, sealed payloads): ${us(sealedMs)} per token\n`,
  );
  process.stdout.write(
    `the same statements with raw ids and JSON payloads (before 0005): ${us(plainMs)} per token\n`,
  );
  await db.destroy();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const secret = randomBytes(32).toString('base64url');
const stored = hashClientSecret(secret);
t0 = performance.now();
for (let i = 0; i < n; i++) if (!clientSecretMatches(secret, stored)) throw new Error('mismatch');
process.stdout.write(`client secret check: ${perOp(t0)}\n`);
