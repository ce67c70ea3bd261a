/**
 * Lockout's transactions survive being a PostgreSQL deadlock's victim: the sign-in path's group
 * commit may take one user's counter rows in the other order than admission does, and the loser
 * must run again rather than fail the sign-in with 40P01.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { openDb } from '../src/db/index.ts';
import { ensureCounter, lockoutTransaction } from '../src/store/lockout.ts';

const temp = await createTempDatabase();

test('a lockout transaction chosen as a deadlock victim runs again and commits', {
  skip: !temp,
}, async () => {
  const { db } = await openDb(temp!.url);
  after(async () => {
    await db.destroy();
    await temp!.drop();
  });
  const key = (location: 'familiar' | 'unfamiliar') => ({ tenantId: 't1', userId: 'u1', location });
  await ensureCounter(db, key('familiar'), 1);
  await ensureCounter(db, key('unfamiliar'), 1);
  const touch = (tx: typeof db, location: string, by: string) =>
    sql`update lockout_counters set failures = failures + 1, updated_at = ${by === 'lockout' ? 2 : 3}
        where tenant_id = 't1' and user_id = 'u1' and location = ${location}`.execute(tx);

  let runs = 0;
  let otherHolds!: () => void;
  const otherHasLock = new Promise<void>((r) => {
    otherHolds = r;
  });
  let lockoutHolds!: () => void;
  const lockoutHasLock = new Promise<void>((r) => {
    lockoutHolds = r;
  });
  // Takes 'unfamiliar' then 'familiar'; it waits long before checking for a deadlock, so
  // PostgreSQL picks the lockout transaction (default deadlock_timeout, 1 s) as the victim.
  const other = db.transaction().execute(async (tx) => {
    await sql`set local deadlock_timeout = '20s'`.execute(tx);
    await touch(tx, 'unfamiliar', 'other');
    otherHolds();
    await lockoutHasLock;
    await touch(tx, 'familiar', 'other');
  });
  const lockout = lockoutTransaction(db, async (tx) => {
    runs++;
    await otherHasLock;
    await touch(tx, 'familiar', 'lockout');
    lockoutHolds();
    await touch(tx, 'unfamiliar', 'lockout');
    return runs;
  });
  await other;
  assert.equal(await lockout, 2, 'the victim ran again once the other transaction committed');
  const rows = await sql<{ location: string; failures: number }>`
    select location, failures from lockout_counters where user_id = 'u1' order by location`.execute(db);
  assert.deepEqual(
    rows.rows.map((r) => [r.location, Number(r.failures)]),
    [
      ['familiar', 2],
      ['unfamiliar', 2],
    ],
    'both transactions counted once each: the victim’s first run left nothing behind',
  );
});
