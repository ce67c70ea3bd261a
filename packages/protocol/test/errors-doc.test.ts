import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { agentOutcomes, catalog, errorCodes } from '../src/errors.ts';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
const rows = new Map(
  doc
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => {
      const cells = l
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim());
      return [cells[0]!.replaceAll('`', ''), cells] as const;
    }),
);

const yn = (b: boolean) => (b ? 'yes' : 'no');

test('every catalog code is documented in docs/errors.md with the same attributes', () => {
  for (const code of errorCodes) {
    const cells = rows.get(code);
    assert.ok(cells, `${code} is missing from docs/errors.md`);
    const e = catalog[code];
    assert.deepEqual(
      cells.slice(1, 8),
      [
        String(e.status),
        `\`${e.oauth}\``,
        yn(e.shown),
        yn(e.lockout),
        yn(e.retryable),
        e.entra === null ? '-' : String(e.entra),
        e.message,
      ],
      `docs/errors.md disagrees with the catalog for ${code}`,
    );
    assert.ok((cells[8] ?? '').length > 10, `${code} needs a meaning and an administrator action`);
  }
});

test('docs/errors.md documents no code the catalog does not have', () => {
  for (const code of rows.keys()) assert.ok(code in catalog, `${code} is documented but not in the catalog`);
});

test('only a wrong password counts toward lockout; infrastructure outcomes are retryable', () => {
  assert.deepEqual(
    errorCodes.filter((c) => catalog[c].lockout),
    ['invalid_credentials'],
  );
  for (const c of [
    'no_agent',
    'agent_timeout',
    'directory_unreachable',
    'directory_timeout',
    'clock_skew',
  ] as const) {
    assert.equal(catalog[c].retryable, true, c);
  }
  for (const o of agentOutcomes) assert.ok(o === 'success' || o in catalog, o);
});
