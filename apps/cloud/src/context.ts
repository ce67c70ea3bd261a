/**
 * What every part of the cloud receives: configuration, state, logger, secrets and TLS material.
 * (The dispatcher's contract, which the gateway and the scale-out router both fulfil, is sign-in's:
 * signin/types.ts.)
 */
import type { Logger } from 'pino';
import type { CloudConfig } from './config.ts';
import type { Db } from './db/index.ts';
import type { SecretBox } from './secrets.ts';

export interface ServiceTls {
  /** PEM of the CA that issued the server certificate (agents and tests pin it). */
  caCert: string;
  cert: string;
  key: string;
}

/**
 * Built once, after the ports are bound (listeners.ts), and never changed: the configuration's
 * URLs already carry the real ports. Parts that need each other get them as arguments (server.ts).
 */
export interface CloudContext {
  readonly config: CloudConfig;
  readonly db: Db;
  readonly log: Logger;
  readonly secrets: SecretBox;
  readonly tls: ServiceTls;
  readonly now: () => number;
}
