/**
 * docs/grafana-dashboard.json cannot rot: every metric its queries name is one the cloud registers
 * (a histogram's _bucket, _sum and _count included), every gatehouse_* family the cloud registers
 * has a panel, and every outcome a query names is in the error catalog.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { catalog } from '@gatehouse/protocol';
import { ensureDefaultMetrics, ensureNatsGauge, register } from '../src/metrics/families.ts';
import '../src/metrics/listener.ts'; // brings the process policy's counter, as every scrape has it

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', '..', '..', 'docs', 'grafana-dashboard.json'), 'utf8'),
) as { panels: Panel[]; templating: { list: { name: string; type: string }[] } };
const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

test('every metric the dashboard queries is registered by the cloud', async () => {
  ensureDefaultMetrics();
  ensureNatsGauge();
  const families = new Map((await register.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));
  const named = new Set(exprs.flatMap((e) => e.match(/\b(?:gatehouse|process|nodejs)_[a-z0-9_]+/g) ?? []));
  assert.ok(named.size >= 20, `the dashboard names ${named.size} metrics`);
  for (const name of named) {
    const base = name.replace(/_(bucket|sum|count)$/, '');
    const type = families.get(name) ?? families.get(base);
    assert.ok(type, `${name} is registered`);
    if (name !== base && !families.has(name))
      assert.equal(type, 'histogram', `${name} belongs to a histogram`);
  }
  const unused = [...families.keys()]
    .filter((n) => n.startsWith('gatehouse_'))
    .filter((n) => ![...named].some((m) => m === n || m.replace(/_(bucket|sum|count)$/, '') === n));
  assert.deepEqual(unused, [], 'every gatehouse_ family has a panel');
});

test('outcomes in the queries are catalog codes; the data source is a variable', () => {
  const outcomes = exprs.flatMap((e) =>
    [...e.matchAll(/outcome=~?"([^"]+)"/g)].flatMap((m) => m[1]!.split('|')),
  );
  assert.ok(outcomes.length > 0);
  for (const o of outcomes) assert.ok(o === 'success' || Object.hasOwn(catalog, o), `${o} is a catalog code`);
  assert.ok(dashboard.templating.list.some((v) => v.type === 'datasource' && v.name === 'datasource'));
  for (const p of dashboard.panels.filter((x) => x.type !== 'row'))
    assert.ok((p.targets ?? []).length > 0, `${p.title} has a query`);
});
