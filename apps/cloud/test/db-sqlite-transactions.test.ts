/**
 * The embedded database is written by two processes at once when an operator runs the CLI on a
 * running cloud's data directory. A cloud transaction that reads and then writes must not fail
 * because the other process committed in between (SQLite answers a DEFERRED transaction's first
 * write with SQLITE_BUSY then, without waiting), so transactions take the write lock at BEGIN.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { Kysely, sql } from 'kysely';
import { openSqlite } from '../src/db/sqlite.ts';

interface T {
  t: { id: number; v: number };
}

test('another connection writing between a transaction’s read and its write does not break it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-tx-'));
  const file = join(dir, 'db.sqlite');
  const { dialect } = openSqlite(file);
  const db = new Kysely<T>({ dialect });
  // The other process's connection: it gives up quickly instead of blocking this test's thread.
  const other = new DatabaseSync(file);
  try {
    await sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)`.execute(db);
    await db.insertInto('t').values({ id: 1, v: 0 }).execute();
    other.exec('PRAGMA busy_timeout = 50');
    let otherWrite: 'committed' | 'waited' = 'committed';
    await db.transaction().execute(async (tx) => {
      const { v } = await tx.selectFrom('t').select('v').where('id', '=', 1).executeTakeFirstOrThrow();
      try {
        other.exec('INSERT INTO t (id, v) VALUES (2, 0)');
      } catch (err) {
        assert.match(String(err), /locked|busy/i);
        otherWrite = 'waited';
      }
      await tx
        .updateTable('t')
        .set({ v: v + 1 })
        .where('id', '=', 1)
        .execute();
    });
    assert.equal(otherWrite, 'waited', 'the transaction held the write lock from its start');
    assert.equal((await db.selectFrom('t').select('v').where('id', '=', 1).executeTakeFirstOrThrow()).v, 1);
    // Once it committed, the other process writes as usual.
    other.exec('INSERT INTO t (id, v) VALUES (2, 0)');
  } finally {
    other.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
