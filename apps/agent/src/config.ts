/**
 * The agent's configuration: one zod schema for the JSON file and GATEHOUSE_AGENT_* variables.
 * Every problem is reported at once (config_invalid with each path), then the result is frozen.
 *
 * Sources, later wins: defaults < JSON file (`--config FILE`, default STATE_DIR/config.json) <
 * environment < explicit overrides. Nested keys use `__` in the environment:
 * GATEHOUSE_AGENT_DIRECTORY__BIND_DN=... ; list values are a JSON array, or `;`-separated.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';

/** Lists from the environment: a JSON array, or `;`-separated (DNs contain commas). */
const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => {
    if (typeof v !== 'string') return v;
    const s = v.trim();
    if (s.startsWith('[')) {
      try {
        return JSON.parse(s);
      } catch {
        return v;
      }
    }
    return s
      .split(';')
      .map((x) => x.trim())
      .filter(Boolean);
  }, z.array(item));

const bool = z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());
const ldapUrl = z
  .string()
  .regex(/^ldaps?:\/\/[^/\s]+\/?$/i, 'must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]');

export const DirectorySchema = z
  .object({
    kind: z.enum(['openldap', 'ad']),
    /** Tried in order; a dead server is skipped until a background probe sees it back. */
    urls: list(ldapUrl).pipe(z.array(ldapUrl).min(1)),
    startTls: bool.default(false),
    /** Pinned CA (PEM file) for ldaps:// and StartTLS; the system store is never used instead. */
    caFile: z.string().min(1).optional(),
    /**
     * The name the server certificate is checked against, when it differs from the URL's host
     * (a DC reached by IP whose certificate only names DC1.corp.example.test). Verification stays on.
     */
    tlsServerName: z.string().min(1).max(253).optional(),
    /** The service account (searches, sync, ppolicy state reads). */
    bindDn: z.string().min(1),
    /** A file holding the service account password (never a flag or an env value). */
    bindPasswordFile: z.string().min(1),
    baseDns: list(z.string().min(1)).pipe(z.array(z.string().min(1)).min(1)),
    /** Default by kind: enabled-or-not user objects. */
    userFilter: z.string().min(3).optional(),
    /** Sync groups and each user's nested membership (default on). */
    syncGroups: bool.default(true),
    /** Where groups are read (default: baseDns). */
    groupBaseDns: list(z.string().min(1))
      .pipe(z.array(z.string().min(1)).min(1))
      .optional(),
    /** Default by kind: AD group objects; OpenLDAP groupOfNames and groupOfUniqueNames. */
    groupFilter: z.string().min(3).optional(),
    /** OpenLDAP: the attribute giving the cloud user name (default mail). AD always uses userPrincipalName. */
    upnAttribute: z.string().min(1).optional(),
    /** OpenLDAP: when the upn attribute is `uid`, the domain appended to it. */
    upnDomain: z.string().min(1).optional(),
    /** AD: NetBIOS domain for onPremName (NETBIOS\sAMAccountName); read from the directory when unset. */
    netbiosDomain: z.string().min(1).optional(),
    /** OpenLDAP: the default ppolicy entry (lockout policy); default cn=default,ou=policies,<first base DN>. */
    ppolicyDefaultDn: z.string().min(3).optional(),
    connectTimeoutMs: z.coerce.number().int().min(100).max(60_000).default(3000),
    timeoutMs: z.coerce.number().int().min(100).max(60_000).default(5000),
    /** Connections kept for user binds (each serves one bind at a time). */
    poolSize: z.coerce.number().int().min(1).max(64).default(4),
    /** Service-account connections kept for searches (ppolicy state, probes, lockout policy). */
    servicePoolSize: z.coerce.number().int().min(1).max(16).default(2),
    /** How often the directory's own lockout policy is read again. */
    lockoutPolicyRefreshMs: z.coerce.number().int().min(1000).max(86_400_000).default(300_000),
    /**
     * Failed binds are answered no faster than recent failed binds took (so a wrong password and an
     * unknown user look alike in time), padding by at most this much; 0 turns it off.
     */
    failureTimingCapMs: z.coerce.number().int().min(0).max(5000).default(300),
    /** How often a server marked down is probed. */
    probeIntervalMs: z.coerce.number().int().min(100).max(600_000).default(10_000),
  })
  .strict();

export const AgentConfigSchema = z
  .object({
    stateDir: z.string().min(1).default('.data/agent'),
    directory: DirectorySchema,
    sync: z
      .object({
        /** Full runs (every user and group; deletions by absence). */
        intervalMinutes: z.coerce
          .number()
          .min(0.01)
          .max(7 * 24 * 60)
          // An hour, not a day: on OpenLDAP only a full run sees a deletion (and revokes the
          // user's refresh tokens), and it costs seconds per few thousand users (docs/benchmarks.md).
          .default(60),
        /** Delta runs between full ones (changes since the mark: delta.ts); 0 turns them off. */
        deltaIntervalMinutes: z.coerce
          .number()
          .min(0)
          .max(24 * 60)
          .default(2),
        pageSize: z.coerce.number().int().min(1).max(500).default(500),
        /** Largest fraction of known users one run may delete without --force. */
        deletionThreshold: z.coerce.number().min(0).max(1).default(0.2),
      })
      .strict()
      .default({ intervalMinutes: 60, deltaIntervalMinutes: 2, pageSize: 500, deletionThreshold: 0.2 }),
    /** More gateways to try, in turn, besides the one registration named (several cloud nodes
     * without a balancer in front; `;`-separated in the environment). */
    gatewayUrls: list(z.url()).optional(),
    /** Outbound HTTPS proxy for the cloud connection (http://HOST:PORT); HTTPS_PROXY otherwise. */
    proxy: z.url().optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type DirectoryConfig = Readonly<z.infer<typeof DirectorySchema>>;
export type AgentConfig = Readonly<Omit<z.infer<typeof AgentConfigSchema>, 'directory'>> & {
  readonly directory: DirectoryConfig;
};

const ENV_PREFIX = 'GATEHOUSE_AGENT_';
const camel = (s: string) => s.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const merge = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isObject(v) && isObject(out[k]) ? merge(out[k], v) : v;
  return out;
};

/** GATEHOUSE_AGENT_DIRECTORY__BIND_DN=x -> { directory: { bindDn: 'x' } } */
export const configFromEnv = (env: NodeJS.ProcessEnv): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith(ENV_PREFIX) || v === undefined || k === `${ENV_PREFIX}CONFIG`) continue;
    const path = k.slice(ENV_PREFIX.length).split('__').map(camel);
    let node = out;
    for (const p of path.slice(0, -1)) {
      if (!isObject(node[p])) node[p] = {};
      node = node[p] as Record<string, unknown>;
    }
    node[path[path.length - 1]] = v;
  }
  return out;
};

export interface LoadOptions {
  /** Explicit config file; otherwise GATEHOUSE_AGENT_CONFIG, otherwise STATE_DIR/config.json if it exists. */
  configFile?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: Record<string, unknown>;
}

const deepFreeze = <T>(o: T): T => {
  if (isObject(o) || Array.isArray(o)) {
    for (const v of Object.values(o as object)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
};

export const loadAgentConfig = (opts: LoadOptions = {}): AgentConfig => {
  const env = opts.env ?? process.env;
  const fromEnv = configFromEnv(env);
  const overrides = opts.overrides ?? {};
  const stateDir = String(overrides.stateDir ?? fromEnv.stateDir ?? '.data/agent');
  let file = opts.configFile ?? env[`${ENV_PREFIX}CONFIG`];
  const explicit = file !== undefined;
  file ??= join(stateDir, 'config.json');
  let fromFile: Record<string, unknown> = {};
  if (explicit || existsSync(file)) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (!isObject(parsed)) throw new Error('not a JSON object');
      fromFile = parsed;
    } catch (err) {
      throw new GatehouseError('config_invalid', [{ path: file, message: (err as Error).message }]);
    }
  }
  const parsed = AgentConfigSchema.safeParse(merge(merge(fromFile, fromEnv), overrides));
  if (!parsed.success) {
    throw new GatehouseError(
      'config_invalid',
      parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
    );
  }
  const c = parsed.data;
  const d = c.directory;
  if (d.startTls && d.urls.some((u) => u.toLowerCase().startsWith('ldaps:'))) {
    throw new GatehouseError('config_invalid', [
      { path: 'directory.startTls', message: 'StartTLS applies to ldap:// URLs only' },
    ]);
  }
  return deepFreeze({
    ...c,
    stateDir: resolve(c.stateDir),
    directory: {
      ...d,
      userFilter:
        d.userFilter ??
        (d.kind === 'ad'
          ? '(&(objectCategory=person)(objectClass=user))'
          : '(|(objectClass=inetOrgPerson)(objectClass=posixAccount))'),
      groupFilter:
        d.groupFilter ??
        (d.kind === 'ad'
          ? '(objectClass=group)'
          : '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))'),
      upnAttribute: d.upnAttribute ?? (d.kind === 'ad' ? 'userPrincipalName' : 'mail'),
      ppolicyDefaultDn:
        d.ppolicyDefaultDn ?? (d.kind === 'openldap' ? `cn=default,ou=policies,${d.baseDns[0]}` : undefined),
    },
  });
};

/** The service-account password, read from its file each time it is needed (so it can be rotated). */
export const readBindPassword = (d: DirectoryConfig): string => {
  const pw = readFileSync(d.bindPasswordFile, 'utf8').replace(/\r?\n$/, '');
  if (!pw)
    throw new GatehouseError('config_invalid', [{ path: 'directory.bindPasswordFile', message: 'empty' }]);
  return pw;
};
