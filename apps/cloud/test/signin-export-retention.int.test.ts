/**
 * The sign-in log export (CSV and JSON lines over the real admin API: every row, filters like
 * the list route, paged past one page, formula-leading cells defused) and retention (old rows of
 * the sign-in and audit logs go, new ones and other tenants' stay; 0 keeps forever), on SQLite
 * and on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { createTempDatabase, type TempDatabase } from '../../../test/harness/postgres.ts';
import { ADMIN_CLIENT_ID } from '../src/admin/index.ts';
import { csvCell } from '../src/admin/routes-export.ts';
import type { Db } from '../src/db/index.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { audit } from '../src/store/audit.ts';
import { createTenant } from '../src/store/tenants.ts';
import { createCloudUser } from '../src/store/users.ts';

const DAY = 86_400_000;
let dir: string;
let pgDb: TempDatabase | null = null;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-export-'));
  pgDb = await createTempDatabase();
});
after(async () => {
  await pgDb?.drop();
  rmSync(dir, { recursive: true, force: true });
});

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

const row = (tenantId: string, at: number, upn: string, outcome = 'success') => ({
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

const insertMany = async (db: Db, rows: ReturnType<typeof row>[]) => {
  for (let i = 0; i < rows.length; i += 500)
    await db
      .insertInto('signins')
      .values(rows.slice(i, i + 500))
      .execute();
};

const tenantWithReader = async (cloud: RunningCloud, label: string) => {
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

test('CSV cells that start a formula are defused; quotes, commas and newlines are quoted', () => {
  assert.equal(csvCell('=HYPERLINK("http://evil")'), `"'=HYPERLINK(""http://evil"")"`);
  assert.equal(csvCell('+1'), `"'+1"`);
  assert.equal(csvCell('-2+3'), `"'-2+3"`);
  assert.equal(csvCell('@SUM(A1)'), `"'@SUM(A1)"`);
  assert.equal(csvCell('\tx'), `"'\tx"`);
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('line\nbreak'), '"line\nbreak"');
  assert.equal(csvCell('alice@corp.example'), 'alice@corp.example');
  assert.equal(csvCell(-1.5), '-1.5');
  assert.equal(csvCell(null), '');
});

test('the sign-in log exports as CSV and JSON lines: every row, newest first, filtered like the list', async () => {
  const cloud = await startCloud(
    { dataDir: join(dir, 'export'), port: 0, gatewayPort: 0, logLevel: 'silent' },
    { env: {} },
  );
  try {
    const a = await tenantWithReader(cloud, 'export-a');
    const b = await tenantWithReader(cloud, 'export-b');
    const t0 = Date.now() - 10_000;
    // More than one page (1,000) of the tenant's rows, and rows of another tenant that never show.
    const rows = Array.from({ length: 2_345 }, (_, i) =>
      row(
        a.id,
        t0 + i,
        i % 5 === 0 ? `=cmd|' /C calc'!A0@export-a.example` : `user${i}@export-a.example`,
        i % 3 ? 'success' : 'invalid_credentials',
      ),
    );
    await insertMany(cloud.ctx.db, [...rows, row(b.id, t0, 'secret@export-b.example')]);
    const f = pinnedFetch(cloud.caCert);
    const get = (tenant: typeof a, path: string) =>
      f(`${cloud.url}/${tenant.id}/api/v1/signins/export/${path}`, {
        headers: { authorization: `Bearer ${tenant.token}` },
      });

    const jl = await get(a, 'jsonl');
    assert.equal(jl.status, 200);
    assert.match(String(jl.headers.get('content-type')), /^application\/x-ndjson/);
    assert.match(String(jl.headers.get('content-disposition')), /attachment; filename="signins-.+\.jsonl"/);
    const lines = (await jl.text())
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, rows.length, 'every row of the tenant, across pages');
    assert.deepEqual(
      lines.map((l) => l.requestId),
      rows.map((r) => r.request_id).reverse(),
      'newest first, no row twice',
    );
    assert.ok(lines.every((l) => !String(l.upn).endsWith('export-b.example')));
    assert.equal(lines[0].at, new Date(rows.at(-1)!.at).toISOString());
    assert.equal(lines[0].success, rows.at(-1)!.outcome === 'success');
    assert.equal(lines[0].userId, undefined);

    const failures = await get(a, 'jsonl?result=failure');
    const failed = (await failures.text())
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(failed.length, rows.filter((r) => r.outcome !== 'success').length);
    assert.ok(failed.every((l) => l.outcome === 'invalid_credentials'));
    const window = await get(a, `jsonl?from=${t0 + 100}&to=${t0 + 199}&outcome=success`);
    const inWindow = (await window.text())
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(inWindow.length, rows.slice(100, 200).filter((r) => r.outcome === 'success').length);

    const csv = await get(a, 'csv');
    assert.equal(csv.status, 200);
    assert.match(String(csv.headers.get('content-type')), /^text\/csv/);
    const text = await csv.text();
    const records = text.trimEnd().split('\r\n');
    assert.equal(
      records[0],
      'id,at,requestId,upn,method,outcome,success,clientId,clientIp,agentId,server,directoryCode,agentMs,directoryMs,totalMs',
    );
    assert.equal(records.length, rows.length + 1);
    // No cell of any record starts a formula (cells are split on commas outside quotes).
    for (const r of records.slice(1)) {
      for (const cell of r
        .match(/("([^"]|"")*"|[^,]*)(,|$)/g)!
        .map((c) => c.replace(/,$/, '').replace(/^"|"$/g, '')))
        assert.doesNotMatch(cell, /^[=+\-@\t\r]/, `a cell of ${r}`);
    }
    assert.ok(text.includes(`"'=cmd|' /C calc'!A0@export-a.example"`), 'the planted UPN, defused and quoted');
    assert.ok(text.includes(`,"'=1+2",`), 'a directory code that starts a formula, defused');

    const other = await f(`${cloud.url}/${b.id}/api/v1/signins/export/csv`, {
      headers: { authorization: `Bearer ${a.token}` },
    });
    assert.equal(other.status, 403, "tenant A's reader cannot export tenant B's log");
    const bad = await get(a, 'csv?result=maybe');
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error, 'validation_failed');
  } finally {
    await cloud.stop();
  }
});

for (const engine of ['sqlite', 'postgres'] as const) {
  test(`retention deletes old sign-in and audit rows of every tenant, keeps the rest (${engine})`, async (t) => {
    if (engine === 'postgres' && !pgDb) return t.skip('no PostgreSQL');
    const settings = {
      dataDir: join(dir, `retention-${engine}`),
      port: 0,
      gatewayPort: 0,
      logLevel: 'silent',
      signInRetentionDays: 30,
      auditRetentionDays: 365,
      ...(engine === 'postgres' ? { database: pgDb!.url } : {}),
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
}
