/**
 * Kysely's SQLite dialect expects better-sqlite3's statement API; node:sqlite spreads positional
 * parameters instead of taking an array. This adapter bridges the two (no native addon needed).
 */
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type SqliteDatabase,
  SqliteDialect,
  SqliteDriver,
  type SqliteStatement,
} from 'kysely';

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

/**
 * Kysely's SQLite driver begins transactions DEFERRED. Every transaction here reads, then writes;
 * a deferred one holds only a read snapshot until its first write, and when another process (the
 * operator CLI on the same data directory) commits in between, that write fails at once with
 * SQLITE_BUSY, busy_timeout or not: a sign-in under load answered server_error. IMMEDIATE takes
 * the write lock at BEGIN, waiting out busy_timeout like any other write.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: ConstructorParameters<typeof SqliteDialect>[0];
  constructor(config: ConstructorParameters<typeof SqliteDialect>[0]) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
}

/**
 * The database holds sealed keys, hashes and the sign-in log: owner-only, whatever the umask.
 * SQLite creates a new database 0644 less the umask and gives its -wal and -shm files the
 * database's own mode, so the file is made 0600 before SQLite opens it; files left by an older
 * version are corrected too.
 */
const ownerOnly = (file: string) => {
  if (file === '' || file === ':memory:' || file.startsWith('file:')) return;
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
};

export const openSqlite = (file: string): { dialect: SqliteDialect; raw: DatabaseSync } => {
  ownerOnly(file);
  const raw = new DatabaseSync(file);
  // WAL lets readers proceed during writes; NORMAL sync is durable across process crashes,
  // which is what a sign-in log needs (an OS crash may lose the last transactions). The busy
  // timeout comes first: setting the journal mode takes a lock, and another process (the running
  // cloud, when this is the CLI) may hold it for a moment.
  raw.exec(
    'PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;',
  );
  const checkpointer = file === ':memory:' ? undefined : startCheckpointer(raw, file);
  const cache = new Map<string, SqliteStatement>();
  const db: SqliteDatabase = {
    close: () => {
      void checkpointer?.terminate();
      raw.close();
    },
    prepare: (sql) => {
      let s = cache.get(sql);
      if (!s) {
        s = wrap(raw.prepare(sql));
        cache.set(sql, s);
      }
      return s;
    },
  };
  return { dialect: new ImmediateSqliteDialect({ database: db }), raw };
};

/** Checkpoint cadence of the background thread. */
const CHECKPOINT_EVERY_MS = 250;
/** If the thread falls behind or dies, the writer checkpoints itself past this many WAL pages. */
const FALLBACK_AUTOCHECKPOINT_PAGES = 4096;

// Runs in a worker thread: its own connection, PASSIVE checkpoints (never block a writer or reader).
const CHECKPOINTER = `
const { workerData } = require('node:worker_threads');
const { DatabaseSync } = require('node:sqlite');
const db = new DatabaseSync(workerData.file);
db.exec('PRAGMA busy_timeout = 1000');
setInterval(() => {
  try { db.exec('PRAGMA wal_checkpoint(PASSIVE)'); } catch {}
}, workerData.everyMs);
`;

/**
 * SQLite's automatic checkpoint runs inside whichever commit crosses the threshold, on the event
 * loop: copying ~1,000 pages back and syncing the database file cost ~0.2 ms per sign-in at full
 * load (measured with npm run bench). A worker thread copies pages back as they come; the writer
 * keeps an automatic threshold, which now finds little left to copy and then recycles the WAL
 * (a checkpoint racing a steady stream of commits never catches up fully on its own). Durability
 * is unchanged (WAL, synchronous=NORMAL).
 */
const startCheckpointer = (raw: DatabaseSync, file: string): Worker | undefined => {
  try {
    const worker = new Worker(CHECKPOINTER, {
      eval: true,
      workerData: { file, everyMs: CHECKPOINT_EVERY_MS },
    });
    worker.unref();
    worker.on('error', () => raw.isOpen && raw.exec('PRAGMA wal_autocheckpoint = 1000'));
    raw.exec(`PRAGMA wal_autocheckpoint = ${FALLBACK_AUTOCHECKPOINT_PAGES}`);
    return worker;
  } catch {
    return undefined;
  }
};
