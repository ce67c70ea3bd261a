/** The sign-in log export, and retention on SQLite (shared parts: signin-export-retention-fixtures.ts). */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { csvCell } from '../src/admin/routes-export.ts';
import { startCloud } from '../src/server.ts';
import { dir, insertMany, retentionTest, row, tenantWithReader } from './signin-export-retention-fixtures.ts';

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

retentionTest('sqlite');
