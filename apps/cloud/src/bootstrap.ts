/**
 * Opens what every cloud entry point (server, operator CLI) needs: the state store and the secret
 * box. Only first-time setup (the cloud's start, `gatehouse init`) may create state: the data
 * directory, the SQLite file, `secret.key` and the key check value. Every entry point checks the
 * secret key against the database's check value before anything is migrated, written or served.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createCa, createServerCert, GatehouseError } from '@gatehouse/protocol';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { CloudConfig } from './config.ts';
import type { ServiceTls } from './context.ts';
import { type Db, openDb } from './db/index.ts';
import { createSecretBox, type SecretBox } from './secrets.ts';
import { keyOpensCheck, probeState, writeKeyCheck } from './store/key-check.ts';
import { getTenantSecrets, listTenants } from './store/tenants.ts';

/** Owner-only, also when it already existed with a looser mode (the SQLite files: db/sqlite.ts). */
const ensureDir = (dir: string) => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
};

const invalid = (path: string, message: string) => new GatehouseError('config_invalid', [{ path, message }]);

/** The SQLite file a `sqlite:` URL names, or undefined for PostgreSQL. */
const sqliteFile = (url: string): string | undefined =>
  url.startsWith('postgres://') || url.startsWith('postgresql://') ? undefined : url.replace(/^sqlite:/, '');

/** Where the database is, for messages: the file, or the URL without its password. */
const describeDb = (url: string): string => {
  const file = sqliteFile(url);
  if (file !== undefined) return file;
  const u = new URL(url);
  u.password = '';
  return u.href;
};

interface Key {
  secrets: SecretBox;
  /** Where it came from, for messages (never the key). */
  where: string;
}

const toKey = (b64: string, where: string): Key => {
  const raw = Buffer.from(b64.trim(), 'base64');
  if (raw.length !== 32) throw invalid('secretKey', `${where} is not a 32-byte key in base64`);
  return { secrets: createSecretBox(raw), where };
};

const readKey = (config: CloudConfig, keyFile: string): Key | undefined => {
  if (config.secretKey !== undefined)
    return toKey(config.secretKey, 'secretKey (GATEHOUSE_CLOUD_SECRET_KEY)');
  if (existsSync(keyFile)) return toKey(readFileSync(keyFile, 'utf8'), keyFile);
  return undefined;
};

/** A new key in DATA_DIR/secret.key; 'wx' fails if another process made one meanwhile: then theirs. */
const makeKey = (keyFile: string): Key => {
  ensureDir(dirname(keyFile));
  try {
    writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600, flag: 'wx' });
  } catch {}
  return toKey(readFileSync(keyFile, 'utf8'), keyFile);
};

/**
 * Decides, on the unmigrated database, whether this process may go on, and with which key.
 * Returns the key and whether the check value still has to be written (after migrations).
 */
const checkKey = async (
  raw: Kysely<unknown>,
  s: { config: CloudConfig; keyFile: string; key: Key | undefined; create: boolean },
): Promise<{ key: Key; writeCheck: boolean }> => {
  const where = describeDb(s.config.database);
  const lookedFor = `set secretKey (GATEHOUSE_CLOUD_SECRET_KEY) or put it in ${s.keyFile}`;
  const probe = await probeState(raw);
  if (probe.sealed !== null) {
    if (!s.key)
      throw invalid('secretKey', `the database at ${where} was set up with a secret key: ${lookedFor}`);
    if (!keyOpensCheck(s.key.secrets, probe.sealed))
      throw invalid(
        'secretKey',
        `the key from ${s.key.where} is not the one the database at ${where} was set up with`,
      );
    return { key: s.key, writeCheck: false };
  }
  if (!s.create)
    throw invalid(
      'database',
      `the database at ${where} has not been set up (it has no key check value): start the cloud once, or run \`gatehouse init\``,
    );
  // An older database (no check value yet): its sealed tenant secrets must open with the key
  // before that key is recorded as the database's own.
  const tenants = probe.hasSchema ? await listTenants(raw as Db) : [];
  if (!s.key) {
    if (tenants.length > 0)
      throw invalid('secretKey', `the database at ${where} holds sealed secrets: ${lookedFor}`);
    return { key: makeKey(s.keyFile), writeCheck: true };
  }
  if (tenants.length > 0) {
    try {
      await getTenantSecrets({ db: raw as Db, secrets: s.key.secrets }, tenants[0]!.id);
    } catch {
      throw invalid(
        'secretKey',
        `the key from ${s.key.where} does not open the secrets in the database at ${where}`,
      );
    }
  }
  return { key: s.key, writeCheck: true };
};

/** What was opened, for the operator (never the key itself). */
export interface StateInfo {
  database: string;
  key: string;
  /** The check value was written now: a new database, or one from before key checks. */
  checkWritten: boolean;
}

export const openState = async (
  config: CloudConfig,
  log?: Pick<Logger, 'warn' | 'info'>,
  { create = true }: { create?: boolean } = {},
): Promise<{ db: Db; secrets: SecretBox; info: StateInfo }> => {
  const keyFile = join(config.dataDir, 'secret.key');
  const file = sqliteFile(config.database);
  // Refused before anything touches the disk: opening SQLite would create the file.
  if (!create && file !== undefined && !existsSync(file))
    throw invalid(
      'dataDir',
      `no Gatehouse database at ${file} (data directory ${config.dataDir}, key ${config.secretKey === undefined ? keyFile : 'secretKey'}): set GATEHOUSE_CLOUD_DATA_DIR or GATEHOUSE_CLOUD_DATABASE to the cloud's, or run \`gatehouse init\` to set up a new one`,
    );
  // PostgreSQL needs the data directory only for a new key (and later the service TLS).
  if (create && file !== undefined) ensureDir(config.dataDir);
  const initial = readKey(config, keyFile);
  let decided: { key: Key; writeCheck: boolean } | undefined;
  const { db } = await openDb(config.database, {
    onPoolError: (err) => log?.warn({ err: err.message }, 'a database connection was dropped'),
    beforeMigrate: async (raw) => {
      decided = await checkKey(raw, { config, keyFile, key: initial, create });
    },
    secrets: () => decided?.key.secrets,
  });
  const { key, writeCheck } = decided!;
  if (writeCheck) {
    const sealed = await writeKeyCheck(db, key.secrets, Date.now());
    // Another process set the database up meanwhile, with another key.
    if (!keyOpensCheck(key.secrets, sealed)) {
      await db.destroy();
      throw invalid('secretKey', `the key from ${key.where} is not the one the database was set up with`);
    }
    log?.info({ database: describeDb(config.database), key: key.where }, 'secret key check value written');
  }
  return {
    db,
    secrets: key.secrets,
    info: { database: describeDb(config.database), key: key.where, checkWritten: writeCheck },
  };
};

/** The service's TLS: configured files, or a private CA and server certificate made once. */
export const loadServiceTls = async (config: CloudConfig): Promise<ServiceTls> => {
  if (config.tlsCertFile && config.tlsKeyFile) {
    const cert = readFileSync(config.tlsCertFile, 'utf8');
    // The chain's last certificate is the issuer agents should pin.
    const chain = cert.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    return { cert, key: readFileSync(config.tlsKeyFile, 'utf8'), caCert: `${chain.at(-1) ?? cert}\n` };
  }
  const dir = join(config.dataDir, 'tls');
  ensureDir(dir);
  const caFile = join(dir, 'ca.pem');
  const caKeyFile = join(dir, 'ca.key');
  if (!existsSync(caFile)) {
    const ca = await createCa('Gatehouse service CA', 3650);
    writeFileSync(caKeyFile, ca.keyPem, { mode: 0o600 });
    writeFileSync(caFile, ca.certPem, { mode: 0o644 });
  }
  const ca = { certPem: readFileSync(caFile, 'utf8'), keyPem: readFileSync(caKeyFile, 'utf8') };
  const namesFile = join(dir, 'server.names');
  const names = config.tlsNames.join(',');
  if (
    !existsSync(join(dir, 'server.pem')) ||
    !existsSync(namesFile) ||
    readFileSync(namesFile, 'utf8') !== names
  ) {
    const server = await createServerCert(ca, config.tlsNames, 397);
    writeFileSync(join(dir, 'server.key'), server.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'server.pem'), server.certPem, { mode: 0o644 });
    writeFileSync(namesFile, names);
  }
  return {
    caCert: ca.certPem,
    cert: readFileSync(join(dir, 'server.pem'), 'utf8'),
    key: readFileSync(join(dir, 'server.key'), 'utf8'),
  };
};
