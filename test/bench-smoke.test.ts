/**
 * A few seconds of `npm run bench` so the benchmark cannot rot: the whole stack (OpenLDAP, the
 * cloud, one agent, the load generator) starts, both phases run, and the last line is the JSON
 * report with sane values. No speed threshold: this box is shared and small.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, runNode } from './harness/children.ts';

test('npm run bench (smoke): both phases run and the last line is the JSON report', async () => {
  const r = await runNode(join(ROOT, 'bench/run.ts'), [
    '--duration',
    '2',
    '--warmup',
    '1',
    '--concurrency',
    '4',
    '--users',
    '100',
    '--quiet',
  ]);
  assert.equal(r.code, 0, r.stderr.slice(-3000));
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  for (const key of [
    'raw_binds_per_s',
    'signins_per_s',
    'ratio',
    'p50_ms',
    'p99_ms',
    'added_p50_ms',
    'cloud_rss_mb',
    'agent_rss_mb',
    'directory',
    'agents',
  ]) {
    assert.ok(key in report, `the report has ${key}`);
  }
  assert.equal(report.directory, 'openldap');
  assert.equal(report.agents, 1);
  assert.ok((report.raw_binds_per_s as number) > 0);
  assert.ok((report.signins_per_s as number) > 0);
  assert.ok((report.ratio as number) > 0);
  assert.ok((report.p99_ms as number) >= (report.p50_ms as number));
  assert.ok((report.cloud_rss_mb as number) > 10 && (report.agent_rss_mb as number) > 10);
  // The 90/10 mix gives exactly the answers the passwords deserve, and nothing fails.
  assert.equal(report.unexpected, 0);
  assert.equal(report.errors, 0);
});
