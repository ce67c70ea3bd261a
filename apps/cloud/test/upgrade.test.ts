/** The first release's database upgrades at start, on SQLite (the case: upgrade-fixtures.ts). */
import { test } from 'node:test';
import { upgrade } from './upgrade-fixtures.ts';

test('SQLite: a database of the first release upgrades at start; client, administrator, agent, token and log work', async () => {
  await upgrade('sqlite');
});
