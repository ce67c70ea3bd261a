/**
 * Kysely's SQLite dialect expects better-sqlite3's statement API; node:sqlite spreads positional
 * parameters instead of taking an array. This adapter bridges the two (no native addon needed).
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { type SqliteDatabase, SqliteDialect, type SqliteStatement } from 'kysely';

type Param = null | number | bigint | string | NodeJS.ArrayBufferView;

const wrap = (stmt: StatementSync): SqliteStatement => ({
  reader: stmt.columns().length > 0,
  all: (params) => stmt.all(...(params as Param[])) as unknown[],
  run: (params) => {
    const r = stmt.run(...(params as Param[]));
    return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
  },
  iterate: (params) => stmt.iterate(...(params as Param[])) as IterableIterator<unknown>,
});

export const openSqlite = (file: string): { dialect: SqliteDialect; raw: DatabaseSync } => {
  const raw = new DatabaseSync(file);
  // WAL lets readers proceed during writes; NORMAL sync is durable across process crashes,
  // which is what a sign-in log needs (an OS crash may lose the last transactions).
  raw.exec(
    'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;',
  );
  const cache = new Map<string, SqliteStatement>();
  const db: SqliteDatabase = {
    close: () => raw.close(),
    prepare: (sql) => {
      let s = cache.get(sql);
      if (!s) {
        s = wrap(raw.prepare(sql));
        cache.set(sql, s);
      }
      return s;
    },
  };
  return { dialect: new SqliteDialect({ database: db }), raw };
};
