/**
 * Prepared queries (db/prepared.ts) answer exactly like the same query built by Kysely each time,
 * inside and outside transactions, and refuse a parameter used to shape the query.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kysely } from 'kysely';
import { prepare } from '../src/db/prepared.ts';
import { openSqlite } from '../src/db/sqlite.ts';

interface T {
  t: { id: string; tenant: string; n: number; note: string | null };
}

const open = () => {
  const { dialect, raw } = openSqlite(':memory:');
  raw.exec('CREATE TABLE t (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, n INTEGER NOT NULL, note TEXT)');
  return new Kysely<T>({ dialect });
};

const byTenantAbove = prepare((db: Kysely<T>, p: { tenant: string; min: number }) =>
  db.selectFrom('t').select(['id', 'n']).where('tenant', '=', p.tenant).where('n', '>', p.min).orderBy('id'),
);
const upsert = prepare((db: Kysely<T>, p: { id: string; tenant: string; n: number; note: string | null }) =>
  db
    .insertInto('t')
    .values({ id: p.id, tenant: p.tenant, n: p.n, note: p.note })
    .onConflict((oc) => oc.column('id').doUpdateSet({ n: p.n, note: p.note })),
);

test('a prepared query returns what the query built each time returns, for every set of values', async () => {
  const db = open();
  try {
    for (let i = 0; i < 20; i++)
      await upsert(db, { id: `u${i}`, tenant: i % 2 ? 'a' : 'b', n: i, note: i % 3 ? null : `x${i}` });
    // Written again: the conflict branch takes the new values.
    await upsert(db, { id: 'u4', tenant: 'b', n: 400, note: 'again' });
    for (const [tenant, min] of [
      ['a', 0],
      ['b', 5],
      ['a', 15],
      ['c', 0],
    ] as const) {
      const built = await db
        .selectFrom('t')
        .select(['id', 'n'])
        .where('tenant', '=', tenant)
        .where('n', '>', min)
        .orderBy('id')
        .execute();
      assert.deepEqual((await byTenantAbove(db, { tenant, min })).rows, built);
    }
    const u4 = await db.selectFrom('t').selectAll().where('id', '=', 'u4').executeTakeFirstOrThrow();
    assert.deepEqual({ ...u4 }, { id: 'u4', tenant: 'b', n: 400, note: 'again' });
  } finally {
    await db.destroy();
  }
});

test('a prepared write inside a transaction commits and rolls back with it', async () => {
  const db = open();
  try {
    await db.transaction().execute((tx) => upsert(tx, { id: 'kept', tenant: 'a', n: 1, note: null }));
    await assert.rejects(
      db.transaction().execute(async (tx) => {
        await upsert(tx, { id: 'gone', tenant: 'a', n: 2, note: null });
        throw new Error('abort');
      }),
      /abort/,
    );
    const ids = (await db.selectFrom('t').select('id').execute()).map((r) => r.id);
    assert.deepEqual(ids, ['kept']);
  } finally {
    await db.destroy();
  }
});

test('a parameter that shapes the query instead of reaching it is refused when first built', async () => {
  const db = open();
  try {
    const bad = prepare((d: Kysely<T>, p: { useNote: boolean }) =>
      d.selectFrom('t').select(p.useNote ? 'note' : 'id'),
    );
    await assert.rejects(async () => bad(db, { useNote: true }), /useNote does not reach the compiled query/);
  } finally {
    await db.destroy();
  }
});
