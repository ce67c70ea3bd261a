/** Sync health on PostgreSQL: the same states from the same run records (sync-health.test.ts has SQLite). */
import { test } from 'node:test';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { openDb } from '../src/db/index.ts';
import { checkHealthStates } from './sync-health-fixtures.ts';

test('PostgreSQL: each state of sync health, from the run records', async (t) => {
  const temp = await createTempDatabase();
  if (!temp) return t.skip('no PostgreSQL');
  const { db } = await openDb(temp.url);
  try {
    // A bare tenant row: the runs only need one to belong to.
    await db
      .insertInto('tenants')
      .values({
        id: 'tenant-pg',
        name: 'PG',
        created_at: Date.now(),
        pta_enabled: 0,
        legacy_auth: 0,
        jit_users: 0,
        login_attribute: 'upn',
        lockout_threshold: 10,
        lockout_duration_s: 60,
        ca_cert: '-',
        ca_key_sealed: '-',
        jwks_sealed: '-',
        cookie_keys_sealed: '-',
        directory_lockout_threshold: null,
        directory_lockout_duration_s: null,
      })
      .execute();
    await checkHealthStates(db, 'tenant-pg');
  } finally {
    await db.destroy();
    await temp.drop();
  }
});
