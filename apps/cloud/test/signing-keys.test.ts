/**
 * A signing key's life by the clock (store/signing-keys.ts), on a real database: published
 * before it signs, the replaced key published until its last token expired, then gone; one
 * rotation at a time; keys sealed at rest; a tenant's original key kept across the change.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { listSigningKeys, loadSigningKeys, rotateSigningKeys } from '../src/store/signing-keys.ts';
import { createTenant, getTenantSecrets } from '../src/store/tenants.ts';
import { openTestState, type TestState } from './directory-fixtures.ts';

let st: TestState;
let now = 1_000_000_000_000;
let tenantId: string;
const ctx = () => ({ ...st.ctx, now: () => now });
const S = 1000;

before(async () => {
  st = await openTestState();
  ({ tenantId } = await createTenant(st.ctx, {
    name: 'Keys',
    domain: 'keys.example',
    admin: { upn: 'admin@keys.example', password: 'Admin-Passw0rd!' },
  }));
});
after(() => st.cleanup());

const kids = async () => (await loadSigningKeys(ctx(), tenantId)).jwks.keys.map((k) => `${k.alg} ${k.kid}`);

test('first use keeps the original ES256 key and adds an RS256 one, each signing first', async () => {
  const original = (await getTenantSecrets(st.ctx, tenantId)).jwks.keys[0]!.kid;
  const { jwks, nextChangeAt } = await loadSigningKeys(ctx(), tenantId);
  assert.deepEqual(jwks.keys.map((k) => k.alg).sort(), ['ES256', 'RS256']);
  assert.ok(
    jwks.keys.some((k) => k.kid === original),
    'the tenant keeps its key: its tokens stay valid',
  );
  assert.equal(nextChangeAt, null);
  // Seeding again (another node, a restart) adds nothing.
  assert.equal((await loadSigningKeys(ctx(), tenantId)).jwks.keys.length, 2);
  const rows = await st.ctx.db.selectFrom('signing_keys').selectAll().execute();
  assert.ok(rows.every((r) => r.jwk_sealed.startsWith('v1.') && !r.jwk_sealed.includes('"d"')));
});

test('a rotation: next keys published, signing after the delay; old ones retire after the longest token', async () => {
  const first = await kids();
  const rotated = await rotateSigningKeys(ctx(), tenantId, { publishDelayS: 3600, maxTokenTtlS: 7200 });
  const next = rotated.filter((k) => k.state === 'next');
  assert.equal(next.length, 2);
  assert.ok(next.every((k) => k.signsFrom === now + 3600 * S));
  await assert.rejects(
    rotateSigningKeys(ctx(), tenantId, { publishDelayS: 3600, maxTokenTtlS: 7200 }),
    (e: { code?: string }) => e.code === 'conflict',
  );

  // Published at once, but the old keys still come first for each algorithm (they sign).
  const during = await loadSigningKeys(ctx(), tenantId);
  assert.equal(during.jwks.keys.length, 4);
  assert.deepEqual(
    during.jwks.keys.slice(0, 2).map((k) => `${k.alg} ${k.kid}`),
    first,
  );
  assert.equal(during.nextChangeAt, now + 3600 * S);

  now += 3600 * S;
  const swapped = await loadSigningKeys(ctx(), tenantId);
  assert.deepEqual(
    swapped.jwks.keys
      .slice(0, 2)
      .map((k) => k.kid)
      .sort(),
    next.map((k) => k.kid).sort(),
    'the new keys sign',
  );
  assert.equal(swapped.jwks.keys.length, 4, 'the old keys still verify what they signed');
  assert.equal(swapped.nextChangeAt, now + 7200 * S);
  const states = (await listSigningKeys(ctx(), tenantId)).map((k) => k.state).sort();
  assert.deepEqual(states, ['retiring', 'retiring', 'signing', 'signing']);

  now += 7200 * S;
  const after = await loadSigningKeys(ctx(), tenantId);
  assert.deepEqual(after.jwks.keys.map((k) => k.kid).sort(), next.map((k) => k.kid).sort());
  assert.equal(after.nextChangeAt, null);
  // The next rotation clears the retired rows out of the table.
  await rotateSigningKeys(ctx(), tenantId, { publishDelayS: 60, maxTokenTtlS: 60 });
  const rows = await st.ctx.db
    .selectFrom('signing_keys')
    .select('kid')
    .where('tenant_id', '=', tenantId)
    .execute();
  assert.equal(rows.length, 4);
});
