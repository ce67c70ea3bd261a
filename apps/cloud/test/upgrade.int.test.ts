/** The first release's database upgrades at start, on PostgreSQL (the case: upgrade-fixtures.ts). */
import { test } from 'node:test';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { upgrade } from './upgrade-fixtures.ts';

test('PostgreSQL: a database of the first release upgrades at start; client, administrator, agent, token and log work', async (t) => {
  const temp = await createTempDatabase();
  if (!temp) return t.skip('no PostgreSQL server');
  try {
    await upgrade('postgres', temp.url);
  } finally {
    await temp.drop();
  }
});
