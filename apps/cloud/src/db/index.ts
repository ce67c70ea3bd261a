import { Kysely, PostgresDialect, sql } from 'kysely';
import { observeQuery } from '../metrics/observe.ts';
import { observePool } from '../metrics/sources.ts';
import type { SecretBox } from '../secrets.ts';
import { type Engine, migrateToLatest } from './migrations.ts';
import type { Database } from './schema.ts';
import { openSqlite } from './sqlite.ts';

export type Db = Kysely<Database>;
export type { Database } from './schema.ts';

/** The cheapest round trip to the database (readiness). */
export const pingDb = async (db: Db): Promise<void> => {
  await sql`select 1`.execute(db);
};

/**
 * Opens the state store named by the configuration and brings its schema up to date.
 * `sqlite:PATH` (embedded shape) or `postgres://...` (scale-out shape).
 */
export const openDb = async (
  url: string,
  opts: {
    onPoolError?: (err: Error) => void;
    /** Runs before migrations, on the unmigrated database; a throw closes it and nothing is migrated. */
    beforeMigrate?: (db: Kysely<unknown>) => Promise<void>;
    /** The secret key, once known (after beforeMigrate): some migrations convert sealed rows. */
    secrets?: () => SecretBox | undefined;
  } = {},
): Promise<{ db: Db; engine: Engine }> => {
  let db: Db;
  let engine: Engine;
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { default: pg } = await import('pg');
    // int8 columns hold ms timestamps, well inside Number's exact range.
    pg.types.setTypeParser(20, (v) => Number(v));
    const pool = new pg.Pool({ connectionString: url });
    // An idle connection the server dropped (restart, failover) must not take the process down:
    // the pool replaces it on next use.
    pool.on('error', (err) => opts.onPoolError?.(err));
    observePool(pool);
    // Kysely's log hook times every statement (metrics/observe.ts), errors included.
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log: observeQuery });
    engine = 'postgres';
  } else {
    const file = url.replace(/^sqlite:/, '');
    db = new Kysely<Database>({ dialect: openSqlite(file).dialect, log: observeQuery });
    engine = 'sqlite';
  }
  try {
    await opts.beforeMigrate?.(db as Kysely<unknown>);
    await migrateToLatest(db as Kysely<unknown>, engine, { secrets: opts.secrets?.() });
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return { db, engine };
};
