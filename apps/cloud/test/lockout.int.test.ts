import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { openDb } from '../src/db/index.ts';
import { suite } from './lockout-suite.ts';

suite('postgres', async () => {
  const temp = await createTempDatabase();
  if (!temp) return null;
  const { db } = await openDb(temp.url);
  return {
    db,
    close: async () => {
      await db.destroy();
      await temp.drop();
    },
  };
});
