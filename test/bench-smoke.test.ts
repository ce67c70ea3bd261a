/**
 * A few seconds of `npm run bench` so the benchmark cannot rot: the whole stack (OpenLDAP, the
 * cloud, one agent, the load generator) starts, both phases run, and the last line is the JSON
 * report with sane values, the machine's floor among them. No speed threshold: this box is shared
 * and small (`npm run bench -- --check` is the guard, outside the suite). The second test holds
 * the guard's reading of docs/benchmarks.md and its arithmetic to account.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { CHECKED, check, readReference } from '../bench/check.ts';
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
    '--floor-scale',
    '0.1',
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
    'cloud_cpu_ms_per_signin',
    'agent_cpu_ms_per_signin',
    'floor_cloud_cpu_ms',
    'cloud_to_floor_ratio',
    'cpu_model',
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
  // The floor: every primitive measured, positive, summing to the floor; the ratio is the cloud's
  // CPU per sign-in over it.
  const floor = report.floor_cloud_cpu_ms as number;
  const parts = report.floor_parts_us as Record<string, number>;
  assert.ok(floor > 0, 'the floor is positive');
  for (const part of [
    'tls_request_and_answer',
    'hpke_seal',
    'agent_websocket_round_trip',
    'sqlite_keyed_reads',
    'sqlite_write_transaction',
    'hmacs',
    'at_rest_seals',
    'es256_id_token',
  ]) {
    assert.ok(parts[part]! > 0, `the floor measured ${part}`);
  }
  const sum = Object.values(parts).reduce((x, y) => x + y, 0) / 1000;
  assert.ok(Math.abs(sum - floor) < 0.002, `the parts (${sum} ms) sum to the floor (${floor} ms)`);
  const cloud = report.cloud_cpu_ms_per_signin as number;
  assert.ok(cloud > 0 && (report.agent_cpu_ms_per_signin as number) > 0);
  const ratio = report.cloud_to_floor_ratio as number;
  assert.ok(Math.abs(ratio - cloud / floor) <= 0.01 + 0.001 * ratio, `ratio ${ratio} = ${cloud} / ${floor}`);
  assert.match(String(report.cpu_model), /\S/);
});

test('npm run bench -- --check: reads the reference in docs/benchmarks.md and scales it by the floor', () => {
  const ref = readReference(ROOT);
  assert.ok(ref.floor_cloud_cpu_ms! > 0);
  for (const f of CHECKED) assert.ok(ref[f]! > 0, `the reference has ${f}`);
  const at = (k: number) => ({
    floor_cloud_cpu_ms: ref.floor_cloud_cpu_ms! * 2, // a machine half as fast
    cloud_cpu_ms_per_signin: ref.cloud_cpu_ms_per_signin! * 2 * k,
    agent_cpu_ms_per_signin: ref.agent_cpu_ms_per_signin! * 2,
  });
  // Twice the reference on a machine half as fast is no regression; 30 % more than that is one.
  assert.equal(check(at(1), ref, 1.25).ok, true);
  assert.equal(check(at(1.2), ref, 1.25).ok, true);
  const bad = check(at(1.3), ref, 1.25);
  assert.equal(bad.ok, false);
  assert.deepEqual(
    bad.lines.filter((l) => !l.ok).map((l) => l.field),
    ['cloud_cpu_ms_per_signin'],
  );
  assert.equal(bad.scale, 2);
});
