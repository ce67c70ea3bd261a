/**
 * The cloud's configuration: one zod schema for the config file and the environment. Every
 * problem is reported at once (config_invalid, with each path), then the result is frozen.
 *
 * Sources, later wins: defaults < JSON file named by GATEHOUSE_CLOUD_CONFIG < GATEHOUSE_CLOUD_* variables.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';

/** Keys naming files the cloud reads (certificates, keys, secrets). */
const FILE_KEYS = [
  'tlsCertFile',
  'tlsKeyFile',
  'natsCaFile',
  'natsCertFile',
  'natsKeyFile',
  'natsPasswordFile',
  'metricsTokenFile',
] as const;

const port = z.coerce.number().int().min(0).max(65535);
/** The metrics listener's default port (the one OpenTelemetry's Prometheus exporter uses). */
export const DEFAULT_METRICS_PORT = 9464;

export const CloudConfigSchema = z
  .object({
    /** Where the embedded shape keeps its SQLite file, generated keys and certificates. */
    dataDir: z.string().min(1).default('.data/cloud'),
    /** `sqlite:PATH` (default: DATA_DIR/gatehouse.db) or `postgres://...`. */
    database: z.string().min(1).optional(),
    /** The public base URL; each tenant's issuer is PUBLIC_URL/TENANT_ID/v2.0. */
    publicUrl: z.url().default('https://localhost:8443'),
    host: z.string().default('127.0.0.1'),
    /** HTTPS port for browsers, relying parties, the admin API and agent registration. */
    port: port.default(8443),
    /** Mutual-TLS port where agents hold their WebSocket. Kept apart from `port` so browsers are
     * never asked for a client certificate. */
    gatewayPort: port.default(8444),
    /** The URL agents are told to connect to (default: wss://HOST-OF-PUBLIC-URL:GATEWAY_PORT). */
    gatewayUrl: z.url().optional(),
    /** 32-byte key (base64) sealing secrets at rest. Default: DATA_DIR/secret.key, made by first-time
     * setup (the cloud's first start, `gatehouse init`). Checked against the database at every start. */
    secretKey: z
      .string()
      .refine((v) => Buffer.from(v.trim(), 'base64').length === 32, 'must be a 32-byte key in base64')
      .optional(),
    /** Server TLS certificate and key (PEM files). Default: a private CA and certificate made at
     * first start in DATA_DIR/tls. */
    tlsCertFile: z.string().optional(),
    tlsKeyFile: z.string().optional(),
    /** Names the generated server certificate covers (comma-separated in the environment). */
    tlsNames: z
      .union([z.string(), z.array(z.string())])
      .transform((v) => (Array.isArray(v) ? v : v.split(',').map((s) => s.trim())).filter(Boolean))
      .default(['localhost', '127.0.0.1']),
    /** How long the cloud waits for an agent's answer before giving agent_timeout. */
    agentTimeoutMs: z.coerce.number().int().min(100).max(60_000).default(10_000),
    heartbeatMs: z.coerce.number().int().min(200).max(300_000).default(10_000),
    /** An agent silent this long is Inactive and gets no requests. */
    inactiveAfterMs: z.coerce.number().int().min(500).max(3_600_000).default(30_000),
    /** How often a node writes its agents' last_seen_at, in one statement for all of them
     * (default inactiveAfterMs). Heartbeats are not written: at a million agents they would be more
     * writes than the sign-ins. The database's view of an agent is this much older at most. */
    presenceWriteMs: z.coerce.number().int().min(100).max(3_600_000).optional(),
    /** Scale-out: how often nodes compare their agent counts and move agents to a node with room
     * (gateway/balance.ts); 0: never (agents stay wherever they connected). */
    rebalanceMs: z.coerce.number().int().min(0).max(600_000).default(2_000),
    /** A sign-in for a tenant whose last agent was connected this recently waits (within its
     * deadline) for one to reconnect, instead of failing with no_agent: an agent restart or a
     * cloud node's death costs latency, not failed sign-ins. 0: never wait. */
    agentReconnectWaitMs: z.coerce.number().int().min(0).max(60_000).default(5_000),
    /** A new token signing key is published this long before it signs (key rotation); the JWKS
     * cache lifetime and how often nodes reload keys follow from it (oidc/keys.ts). */
    signingKeyPublishDelayS: z.coerce
      .number()
      .int()
      .min(4)
      .max(7 * 86400)
      .default(3600),
    /** Inactive agents are pruned after this many days (Entra: 10). */
    pruneAfterDays: z.coerce.number().min(0.0001).max(365).default(10),
    /** Lifetime of agent certificates; they renew at two thirds of it. */
    agentCertDays: z.coerce.number().int().min(1).max(825).default(180),
    /** Lifetime of one-time registration tokens. */
    registrationTokenTtlS: z.coerce
      .number()
      .int()
      .min(30)
      .max(7 * 86400)
      .default(3600),
    /** Behind a TLS-terminating proxy: trust its X-Forwarded-* headers (client IP, scheme). Off by
     * default, since otherwise any client could pick the IP that sign-in logs and lockout see. */
    trustProxy: z.union([z.boolean(), z.stringbool()]).default(false),
    /** Scale-out shape: NATS carries sign-ins to the node holding one of the tenant's agents. */
    natsUrl: z
      .string()
      .regex(/^(nats|tls):\/\/\S+$/, 'must be nats://HOST:PORT')
      .optional(),
    /** NATS over TLS: the CA that issued the NATS servers' certificates (pinned; required for tls://). */
    natsCaFile: z.string().min(1).optional(),
    /** NATS mutual TLS: this node's certificate and key (PEM files), when the servers ask for one. */
    natsCertFile: z.string().min(1).optional(),
    natsKeyFile: z.string().min(1).optional(),
    /** NATS user name, and a file holding its password (never the password itself in config). */
    natsUser: z.string().min(1).max(256).optional(),
    natsPasswordFile: z.string().min(1).optional(),
    /** This node's name in logs and NATS (default: host name and process id). */
    nodeId: z.string().min(1).max(64).optional(),
    /** On SIGTERM, how long in-flight sign-ins may take before the process exits anyway. */
    drainMs: z.coerce.number().int().min(0).max(120_000).default(15_000),
    /** Days the sign-in log and the audit log keep a row (0: forever). Service-wide, not per tenant:
     * the operator owns the database's size, and a tenant keeps longer by exporting. */
    signInRetentionDays: z.coerce.number().min(0).max(3650).default(30),
    auditRetentionDays: z.coerce.number().min(0).max(3650).default(365),
    /** How often the retention sweep runs (the first one a minute after start, or sooner). */
    retentionSweepMs: z.coerce.number().int().min(100).max(86_400_000).default(3_600_000),
    /** On SIGTERM, how long the node keeps serving while /readyz answers 503, so a balancer that
     * probes it stops sending traffic before its ports close (at least its probe interval times
     * its failure threshold). */
    drainDelayMs: z.coerce.number().int().min(0).max(120_000).default(0),
    /** Prometheus metrics, /livez and /readyz on their own listener (never the public port).
     * Default 9464, or any free port when `port` is 0; `off`: no metrics listener. */
    metricsPort: z.union([z.literal('off'), port]).optional(),
    metricsHost: z.string().min(1).default('127.0.0.1'),
    /** A file holding a bearer token /metrics then requires (at least 16 characters). */
    metricsTokenFile: z.string().min(1).optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (c.natsUrl?.startsWith('tls://') && !c.natsCaFile)
      issue('natsCaFile', 'a tls:// NATS URL needs the CA to pin');
    if ((c.natsCertFile === undefined) !== (c.natsKeyFile === undefined))
      issue('natsCertFile', 'natsCertFile and natsKeyFile go together');
    if ((c.natsUser === undefined) !== (c.natsPasswordFile === undefined))
      issue('natsUser', 'natsUser and natsPasswordFile go together');
    // A file that cannot be read is reported now, with every other problem, not at first use.
    for (const key of FILE_KEYS) {
      const file = c[key];
      if (file === undefined) continue;
      try {
        accessSync(file, constants.R_OK);
      } catch {
        issue(key, `cannot read ${file}`);
      }
    }
  });

export type CloudConfig = Readonly<
  Omit<
    z.infer<typeof CloudConfigSchema>,
    'database' | 'gatewayUrl' | 'nodeId' | 'metricsPort' | 'presenceWriteMs'
  > & {
    metricsPort: number | 'off';
    presenceWriteMs: number;
    database: string;
    gatewayUrl: string;
    nodeId: string;
  }
>;

/**
 * How recent a stored last_seen_at must be for the agent to count as Active in what is read from
 * the database (admin center, CLI, metrics, the router's agent keys): the live threshold plus the
 * interval at which nodes write presence, since a connected agent's row is refreshed only that often.
 */
export const storedLiveness = (c: Pick<CloudConfig, 'inactiveAfterMs' | 'presenceWriteMs'>): number =>
  c.inactiveAfterMs + c.presenceWriteMs;

const ENV_PREFIX = 'GATEHOUSE_CLOUD_';
const keyFromEnv = (name: string): string =>
  name
    .slice(ENV_PREFIX.length)
    .toLowerCase()
    .replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * A setting under the name it had before the cloud took its own prefix (GATEHOUSE_PORT): refused
 * with the new name rather than ignored, so an upgraded host does not start on defaults.
 */
const isFirstReleaseName = (name: string): boolean =>
  name.startsWith('GATEHOUSE_') &&
  !name.startsWith(ENV_PREFIX) &&
  !name.startsWith('GATEHOUSE_AGENT_') &&
  (name === 'GATEHOUSE_CONFIG' ||
    keyFromEnv(name.replace('GATEHOUSE_', ENV_PREFIX)) in CloudConfigSchema.shape);

/** Builds the config from defaults, an optional file, env vars and explicit overrides. */
export const loadCloudConfig = (
  env: NodeJS.ProcessEnv = process.env,
  overrides: Record<string, unknown> = {},
): CloudConfig => {
  let fromFile: Record<string, unknown> = {};
  if (env.GATEHOUSE_CLOUD_CONFIG) {
    try {
      fromFile = JSON.parse(readFileSync(env.GATEHOUSE_CLOUD_CONFIG, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new GatehouseError('config_invalid', [{ path: 'GATEHOUSE_CLOUD_CONFIG', message: String(err) }]);
    }
  }
  const fromEnv: Record<string, unknown> = {};
  const renamed = Object.keys(env).filter(isFirstReleaseName);
  if (renamed.length > 0) {
    throw new GatehouseError(
      'config_invalid',
      renamed.map((k) => ({
        path: k,
        message: `renamed: the cloud reads ${k.replace('GATEHOUSE_', ENV_PREFIX)}`,
      })),
    );
  }
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith(ENV_PREFIX) && k !== 'GATEHOUSE_CLOUD_CONFIG' && v !== undefined)
      fromEnv[keyFromEnv(k)] = v;
  }
  const parsed = CloudConfigSchema.safeParse({ ...fromFile, ...fromEnv, ...overrides });
  if (!parsed.success) {
    throw new GatehouseError(
      'config_invalid',
      parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
    );
  }
  const c = parsed.data;
  const dataDir = resolve(c.dataDir);
  const host = new URL(c.publicUrl).hostname;
  return Object.freeze({
    ...c,
    dataDir,
    publicUrl: c.publicUrl.replace(/\/+$/, ''),
    database: c.database ?? `sqlite:${resolve(dataDir, 'gatehouse.db')}`,
    gatewayUrl: c.gatewayUrl ?? `wss://${host}:${c.gatewayPort}`,
    nodeId: c.nodeId ?? `${hostname()}-${process.pid}`,
    presenceWriteMs: c.presenceWriteMs ?? c.inactiveAfterMs,
    // A cloud on any free port (tests, several on one host) gets its metrics on one too.
    metricsPort: c.metricsPort ?? (c.port === 0 ? 0 : DEFAULT_METRICS_PORT),
  });
};
