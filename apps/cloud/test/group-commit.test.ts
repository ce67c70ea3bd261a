/**
 * The sign-in path's group commit (db/group-commit.ts) on the embedded database: writes of one
 * turn share one transaction, each caller hears back only once its write is committed (another
 * connection sees it), a lone write runs without a transaction, and one failing write fails alone.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, test } from 'node:test';
import { Kysely, sql } from 'kysely';
import { createGroupCommit } from '../src/db/group-commit.ts';
import type { Db } from '../src/db/index.ts';
import { openSqlite } from '../src/db/sqlite.ts';

interface T {
  t: { id: number; v: string };
}

let dir: string;
let db: Kysely<T>;
let other: DatabaseSync;
const statements: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-gc-'));
  const file = join(dir, 'db.sqlite');
  db = new Kysely<T>({
    dialect: openSqlite(file).dialect,
    log: (e) => void statements.push(e.query.sql.toLowerCase()),
  });
  await sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`.execute(db);
  other = new DatabaseSync(file);
});

after(async () => {
  other.close();
  await db.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const insert = (id: number, v: string | null) => (tx: Db) =>
  (tx as unknown as Kysely<T>)
    .insertInto('t')
    .values({ id, v: v as string })
    .execute();
const seen = (id: number) =>
  other.prepare('SELECT v FROM t WHERE id = ?').get(id) as { v: string } | undefined;
const count = (word: string) => statements.filter((s) => s.startsWith(word)).length;

test('writes made in one turn commit in one transaction, each caller after the commit', async () => {
  const writes = createGroupCommit(db as unknown as Db);
  statements.length = 0;
  const done = [1, 2, 3, 4, 5].map((id) =>
    writes.run(insert(id, `v${id}`)).then(() => {
      // Resolved only once committed: another connection reads the row at this moment.
      assert.equal(seen(id)?.v, `v${id}`);
    }),
  );
  await Promise.all(done);
  assert.equal(count('begin'), 1, statements.join('\n'));
  assert.equal(count('commit'), 1);
  assert.equal(count('insert'), 5);
});

test('a lone write runs without a transaction around it', async () => {
  const writes = createGroupCommit(db as unknown as Db);
  statements.length = 0;
  await writes.run(insert(10, 'alone'));
  assert.equal(seen(10)?.v, 'alone');
  assert.equal(count('begin'), 0);
});

test('one failing write fails alone; the others of its batch are committed', async () => {
  const writes = createGroupCommit(db as unknown as Db);
  const results = await Promise.allSettled([
    writes.run(insert(20, 'a')),
    writes.run(insert(21, null)), // NOT NULL: refused
    writes.run(insert(22, 'c')),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  assert.equal(seen(20)?.v, 'a');
  assert.equal(seen(21), undefined);
  assert.equal(seen(22)?.v, 'c');
});

test('writes arriving while a batch commits wait for the next one; flush waits for all', async () => {
  const writes = createGroupCommit(db as unknown as Db);
  statements.length = 0;
  const first = writes.run(insert(30, 'x'));
  const second = writes.run(insert(31, 'y'));
  await new Promise((r) => setImmediate(r));
  const later = [writes.run(insert(32, 'z')), writes.run(insert(33, 'w'))];
  await writes.flush();
  await Promise.all([first, second, ...later]);
  assert.deepEqual(
    [30, 31, 32, 33].map((id) => seen(id)?.v),
    ['x', 'y', 'z', 'w'],
  );
  assert.ok(count('begin') >= 1 && count('begin') <= 2, statements.join('\n'));
});
