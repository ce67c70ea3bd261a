/**
 * The sign-in log export (CSV and JSON lines over the real admin API: every row, filters like
 * the list route, paged past one page, formula-leading cells defused) and retention (old rows of
 * the sign-in and audit logs go, new ones and other tenants' stay; 0 keeps forever). The export
 * and retention on SQLite run in signin-export-retention.test.ts, retention on PostgreSQL in
 * signin-export-retention.int.test.ts; what they share is here.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ADMIN_CLIENT_ID } from '../src/admin/index.ts';
import type { Db } from '../src/db/index.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { audit } from '../src/store/audit.ts';
import { createTenant } from '../src/store/tenants.ts';
import { createCloudUser } from '../src/store/users.ts';

const DAY = 86_400_000;
export const dir = mkdtempSync(join(tmpdir(), 'gh-export-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const mint = async (cloud: RunningCloud, tenantId: string, accountId: string): Promise<string> => {
  const t = (await cloud.oidc.forTenant(tenantId))!;
  const client = (await t.provider.Client.find(ADMIN_CLIENT_ID))!;
  const grant = new t.provider.Grant({ accountId, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid profile');
  const grantId = await grant.save();
  return new t.provider.AccessToken({
    accountId,
    client,
    grantId,
    gty: 'authorization_code',
    scope: 'openid profile',
  }).save();
};

export const row = (tenantId: string, at: number, upn: string, outcome = 'success') => ({
  tenant_id: tenantId,
  at,
  request_id: `req-${at}-${upn}`,
  upn,
  user_id: null,
  method: 'password_grant',
  outcome,
  client_id: 'c1',
  client_ip: '192.0.2.7',
  agent_id: outcome === 'no_agent' ? null : 'agent-1',
  server: 'ldap://dc1',
  directory_code: outcome === 'success' ? null : '=1+2',
  agent_ms: 1.5,
  directory_ms: 0.5,
  total_ms: 3.25,
});

export const insertMany = async (db: Db, rows: ReturnType<typeof row>[]) => {
  for (let i = 0; i < rows.length; i += 500)
    await db
      .insertInto('signins')
      .values(rows.slice(i, i + 500))
      .execute();
};

export const tenantWithReader = async (cloud: RunningCloud, label: string) => {
  const t = await createTenant(cloud.ctx, {
    name: label,
    domain: `${label}.example`,
    admin: { upn: `admin@${label}.example`, password: 'Admin-Passw0rd!' },
  });
  const reader = await createCloudUser(cloud.ctx.db, t.tenantId, {
    upn: `reader@${label}.example`,
    password: 'Reader-Passw0rd!',
    roles: ['reader'],
  });
  return { id: t.tenantId, token: await mint(cloud, t.tenantId, reader.id) };
};

/** Retention on one engine: `database` is PostgreSQL's URL, null when no server runs here. */
export const retentionTest = (engine: 'sqlite' | 'postgres', database?: string | null) =>
  test(`retention deletes old sign-in and audit rows of every tenant, keeps the rest (${engine})`, async (t) => {
    if (engine === 'postgres' && !database) return t.skip('no PostgreSQL');
    const settings = {
      dataDir: join(dir, `retention-${engine}`),
      port: 0,
      gatewayPort: 0,
      logLevel: 'silent',
      signInRetentionDays: 30,
      auditRetentionDays: 365,
      ...(engine === 'postgres' ? { database: database! } : {}),
    };
    const cloud = await startCloud(settings, { env: {} });
    try {
      const db = cloud.ctx.db;
      const now = Date.now();
      const tenants = [
        await tenantWithReader(cloud, `ret-a-${engine}`),
        await tenantWithReader(cloud, `ret-b-${engine}`),
      ];
      for (const { id } of tenants) {
        // 1,234 rows past retention (more than two batches), 10 inside it.
        await insertMany(db, [
          ...Array.from({ length: 1_234 }, (_, i) => row(id, now - 31 * DAY - i, `old${i}@x.example`)),
          ...Array.from({ length: 10 }, (_, i) => row(id, now - 29 * DAY + i, `new${i}@x.example`)),
        ]);
        await audit(db, { tenantId: id, actor: 'operator', action: 'old.thing' }, now - 366 * DAY);
        await audit(db, { tenantId: id, actor: 'operator', action: 'recent.thing' }, now - 364 * DAY);
      }
      const swept = await cloud.retention.sweep();
      assert.equal(swept.signIns, 2 * 1_234);
      assert.equal(swept.audit, 2);
      for (const { id } of tenants) {
        const left = await db.selectFrom('signins').select('upn').where('tenant_id', '=', id).execute();
        assert.equal(left.length, 10);
        assert.ok(left.every((r) => r.upn.startsWith('new')));
        const actions = (
          await db.selectFrom('audit').select('action').where('tenant_id', '=', id).execute()
        ).map((r) => r.action);
        assert.ok(actions.includes('recent.thing') && !actions.includes('old.thing'), actions.join());
      }
      assert.deepEqual(
        await cloud.retention.sweep(),
        { signIns: 0, audit: 0 },
        'a second sweep finds nothing',
      );
    } finally {
      await cloud.stop();
    }
    // 0 keeps forever: the same database, rows older than any retention, nothing deleted.
    const keep = await startCloud(
      { ...settings, signInRetentionDays: 0, auditRetentionDays: 0 },
      { env: {} },
    );
    try {
      const [{ id }] = [await tenantWithReader(keep, `ret-keep-${engine}`)];
      await insertMany(keep.ctx.db, [row(id, Date.now() - 3000 * DAY, 'ancient@x.example')]);
      assert.deepEqual(await keep.retention.sweep(), { signIns: 0, audit: 0 });
      assert.equal(
        (await keep.ctx.db.selectFrom('signins').select('id').where('tenant_id', '=', id).execute()).length,
        1,
      );
    } finally {
      await keep.stop();
    }
  });
