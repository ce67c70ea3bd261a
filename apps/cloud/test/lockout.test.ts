import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDb } from '../src/db/index.ts';
import { networkOf } from '../src/lockout/smart-lockout.ts';
import { suite } from './lockout-suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'gh-lockout-'));
suite('sqlite', async () => {
  const { db } = await openDb(`sqlite:${join(dir, 'db.sqlite')}`);
  return {
    db,
    close: async () => {
      await db.destroy();
      // The keyed hashes must not contain the passwords.
      for (const f of readdirSync(dir)) assert.ok(!readFileSync(join(dir, f)).includes('same-wrong'), f);
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('networkOf groups addresses by /24 and /64', () => {
  assert.equal(networkOf('192.0.2.44'), '192.0.2.0/24');
  assert.equal(networkOf('::ffff:192.0.2.44'), '192.0.2.0/24');
  assert.equal(networkOf('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
});
