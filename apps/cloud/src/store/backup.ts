/**
 * Backup and restore of the embedded shape: the SQLite database copied with SQLite's online
 * backup API while the cloud serves, with the files the database cannot be used without
 * (`secret.key`, the generated service TLS that agents and applications pin). A manifest lists
 * every file with its SHA-256, so a restore refuses a partial or altered copy.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { backup, DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '@gatehouse/protocol';
import { Kysely } from 'kysely';
import { openSqlite } from '../db/sqlite.ts';
import { createSecretBox } from '../secrets.ts';
import { keyOpensCheck, probeState } from './key-check.ts';

export const MANIFEST = 'manifest.json';
export const DB_FILE = 'gatehouse.db';
const FORMAT = 'gatehouse-backup-v1';
/** The generated service TLS (bootstrap.ts loadServiceTls). */
const TLS_FILES = ['ca.pem', 'ca.key', 'server.pem', 'server.key', 'server.names'];
/**
 * Pages per backup step, as large as the API takes: the whole copy is one step, so one read
 * transaction. In WAL mode that never blocks the cloud's writer; with smaller steps every commit
 * of the serving cloud (another connection) would restart the copy, which under sign-in load
 * might never finish.
 */
const ONE_STEP = 2 ** 31 - 1;

export interface Manifest {
  format: typeof FORMAT;
  createdAt: string;
  /** File name (relative to the backup directory) to its SHA-256. */
  files: Record<string, string>;
  /** Where the secret key is: in the backup, or given by configuration (GATEHOUSE_CLOUD_SECRET_KEY). */
  secretKey: 'secret.key' | 'configured';
  /** Whether the generated service TLS is in the backup (not when tlsCertFile/tlsKeyFile are set). */
  tls: boolean;
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Refuses a directory that holds anything: a backup or a restore never overwrites. */
const emptyDir = (dir: string, what: string) => {
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new GatehouseError('conflict', { [what]: dir, reason: 'exists and is not empty' });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
};

const copyOwnerOnly = (from: string, to: string) => {
  mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
  copyFileSync(from, to);
  chmodSync(to, 0o600);
};

/** `gatehouse backup`: the database (online), then the key file and the generated TLS. */
export const backupSqlite = async (s: {
  dbFile: string;
  dataDir: string;
  keyConfigured: boolean;
  out: string;
}): Promise<Manifest & { pages: number }> => {
  emptyDir(s.out, 'out');
  const target = join(s.out, DB_FILE);
  // Made owner-only before SQLite writes into it (it would create it 0644 less the umask).
  closeSync(openSync(target, 'wx', 0o600));
  const source = new DatabaseSync(s.dbFile);
  let pages: number;
  try {
    source.exec('PRAGMA busy_timeout = 5000');
    pages = await backup(source, target, { rate: ONE_STEP });
  } finally {
    source.close();
  }
  const names = [DB_FILE];
  const keyFile = join(s.dataDir, 'secret.key');
  const keyInBackup = !s.keyConfigured && existsSync(keyFile);
  if (keyInBackup) {
    copyOwnerOnly(keyFile, join(s.out, 'secret.key'));
    names.push('secret.key');
  }
  const tlsDir = join(s.dataDir, 'tls');
  const tls = TLS_FILES.every((f) => existsSync(join(tlsDir, f)));
  if (tls)
    for (const f of TLS_FILES) {
      copyOwnerOnly(join(tlsDir, f), join(s.out, 'tls', f));
      names.push(`tls/${f}`);
    }
  const manifest: Manifest = {
    format: FORMAT,
    createdAt: new Date().toISOString(),
    files: Object.fromEntries(names.map((n) => [n, sha256(join(s.out, n))])),
    secretKey: keyInBackup ? 'secret.key' : 'configured',
    tls,
  };
  writeFileSync(join(s.out, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  return { ...manifest, pages };
};

const readManifest = (from: string): Manifest => {
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(join(from, MANIFEST), 'utf8')) as Manifest;
  } catch (err) {
    throw new GatehouseError('validation_failed', [
      { path: '--from', message: `${from} is not a Gatehouse backup: ${(err as Error).message}` },
    ]);
  }
  if (m.format !== FORMAT || typeof m.files?.[DB_FILE] !== 'string')
    throw new GatehouseError('validation_failed', [
      { path: '--from', message: `${from}/${MANIFEST} is not a ${FORMAT} manifest` },
    ]);
  for (const [name, digest] of Object.entries(m.files)) {
    const file = join(from, name);
    if (name.includes('..') || !existsSync(file) || sha256(file) !== digest)
      throw new GatehouseError('validation_failed', [
        { path: '--from', message: `${file} is missing or differs from the manifest` },
      ]);
  }
  return m;
};

/** Whether the key opens the database's check value (read before anything else is trusted). */
const keyMatches = async (dbFile: string, keyB64: string): Promise<boolean> => {
  const raw = Buffer.from(keyB64.trim(), 'base64');
  if (raw.length !== 32) return false;
  const db = new Kysely<unknown>({ dialect: openSqlite(dbFile).dialect });
  try {
    const { sealed } = await probeState(db);
    return sealed !== null && keyOpensCheck(createSecretBox(raw), sealed);
  } finally {
    await db.destroy();
  }
};

/**
 * `gatehouse restore`: into an empty (or new) data directory only. The key is checked against
 * the restored database's check value before the restore counts as done; on any failure, what
 * was written is removed again, so a failed restore leaves nothing a cloud could start on.
 */
export const restoreSqlite = async (s: {
  from: string;
  dataDir: string;
  /** GATEHOUSE_CLOUD_SECRET_KEY, for a backup of a cloud whose key came from configuration. */
  configuredKey: string | undefined;
}): Promise<Manifest> => {
  const m = readManifest(s.from);
  const key =
    m.secretKey === 'secret.key' ? readFileSync(join(s.from, 'secret.key'), 'utf8') : s.configuredKey;
  if (key === undefined)
    throw new GatehouseError('config_invalid', [
      {
        path: 'secretKey',
        message: `the backup at ${s.from} holds no secret.key (the cloud's key came from configuration): set GATEHOUSE_CLOUD_SECRET_KEY to it`,
      },
    ]);
  const existed = existsSync(s.dataDir);
  emptyDir(s.dataDir, '--data-dir');
  try {
    for (const name of Object.keys(m.files)) copyOwnerOnly(join(s.from, name), join(s.dataDir, name));
    if (!(await keyMatches(join(s.dataDir, DB_FILE), key)))
      throw new GatehouseError('config_invalid', [
        {
          path: 'secretKey',
          message: `the key ${m.secretKey === 'secret.key' ? `in ${s.from}/secret.key` : 'from GATEHOUSE_CLOUD_SECRET_KEY'} is not the one the backed-up database was set up with`,
        },
      ]);
  } catch (err) {
    for (const f of readdirSync(s.dataDir)) rmSync(join(s.dataDir, f), { recursive: true, force: true });
    if (!existed) rmSync(s.dataDir, { recursive: true, force: true });
    throw err;
  }
  return m;
};
