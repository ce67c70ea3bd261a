/**
 * Opens what every cloud entry point (server, operator CLI) needs: the state store, the secret
 * box and the service's TLS material, creating them on first start in the embedded shape.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, createServerCert } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { CloudConfig } from './config.ts';
import type { ServiceTls } from './context.ts';
import { type Db, openDb } from './db/index.ts';
import { createSecretBox, type SecretBox } from './secrets.ts';

const ensureDir = (dir: string) => mkdirSync(dir, { recursive: true, mode: 0o700 });

const readOrCreate = (file: string, make: () => string): string => {
  if (existsSync(file)) return readFileSync(file, 'utf8');
  const value = make();
  // 'wx' fails if another process created it meanwhile; then read theirs.
  try {
    writeFileSync(file, value, { mode: 0o600, flag: 'wx' });
    return value;
  } catch {
    return readFileSync(file, 'utf8');
  }
};

export const openState = async (
  config: CloudConfig,
  log?: Pick<Logger, 'warn'>,
): Promise<{ db: Db; secrets: SecretBox }> => {
  ensureDir(config.dataDir);
  const keyB64 =
    config.secretKey ??
    readOrCreate(join(config.dataDir, 'secret.key'), () => randomBytes(32).toString('base64'));
  const { db } = await openDb(config.database, {
    onPoolError: (err) => log?.warn({ err: err.message }, 'a database connection was dropped'),
  });
  return { db, secrets: createSecretBox(Buffer.from(keyB64.trim(), 'base64')) };
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
