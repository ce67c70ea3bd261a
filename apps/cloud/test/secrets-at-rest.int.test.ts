/** Secrets at rest on PostgreSQL: no secret in any row (what is exercised: secrets-at-rest-fixtures.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { assertNowhere, dumpTables, exercise, start } from './secrets-at-rest-fixtures.ts';

test('PostgreSQL: no secret in any row', async (t) => {
  const temp = await createTempDatabase();
  if (!temp) return t.skip('no PostgreSQL server');
  const { cloud } = await start(temp.url);
  try {
    const ex = await exercise(cloud);
    await cloud.authenticator.flush();
    const tables = await dumpTables(cloud.ctx.db);
    assert.ok(tables.has('oidc_payloads') && tables.has('clients'));
    assertNowhere(ex.secrets, tables);
  } finally {
    await cloud.stop();
    await temp.drop();
  }
});
