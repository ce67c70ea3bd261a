/**
 * The sample app's configuration: flags win over SAMPLE_APP_* variables, one zod schema checks
 * both, and every problem is reported at once as config_invalid.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';

export const SampleAppConfigSchema = z
  .object({
    /** The tenant's issuer, e.g. https://localhost:8443/TENANT_ID/v2.0 (discovery is done against it). */
    issuer: z.url(),
    clientId: z.string().min(1),
    /** Only for confidential clients; public clients rely on PKCE alone. */
    clientSecretFile: z.string().min(1).optional(),
    /** PEM CA that the issuer's certificate must chain to (pinned: the system store is not used). */
    caFile: z.string().min(1).optional(),
    host: z.string().default('127.0.0.1'),
    port: z.coerce.number().int().min(0).max(65535).default(3000),
    /** Where browsers reach this app; the redirect URI is BASE_URL/callback. */
    baseUrl: z.url().optional(),
    scope: z.string().default('openid profile email offline_access'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type SampleAppConfig = Readonly<
  Omit<z.infer<typeof SampleAppConfigSchema>, 'baseUrl'> & {
    baseUrl: string;
    caPem?: string;
    clientSecret?: string;
  }
>;

const FLAGS = {
  issuer: 'ISSUER',
  'client-id': 'CLIENT_ID',
  'client-secret-file': 'CLIENT_SECRET_FILE',
  'ca-file': 'CA_FILE',
  host: 'HOST',
  port: 'PORT',
  'base-url': 'BASE_URL',
  scope: 'SCOPE',
  'log-level': 'LOG_LEVEL',
} as const;

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

const readFile = (path: string, key: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new GatehouseError('config_invalid', [{ path: key, message: (err as Error).message }]);
  }
};

export const loadSampleAppConfig = (
  argv: string[] = process.argv.slice(2),
  env: NodeJS.ProcessEnv = process.env,
): SampleAppConfig => {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string' as const }]));
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new GatehouseError('config_invalid', [{ path: '(flags)', message: (err as Error).message }]);
  }
  const raw: Record<string, unknown> = {};
  for (const [flag, envName] of Object.entries(FLAGS)) {
    const v = values[flag] ?? env[`SAMPLE_APP_${envName}`];
    if (v !== undefined) raw[camel(flag)] = v;
  }
  const parsed = SampleAppConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new GatehouseError(
      'config_invalid',
      parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
    );
  }
  const c = parsed.data;
  const caPem = c.caFile ? readFile(c.caFile, 'caFile') : undefined;
  const clientSecret = c.clientSecretFile
    ? readFile(c.clientSecretFile, 'clientSecretFile').trim()
    : undefined;
  const baseUrl = (c.baseUrl ?? `http://${c.host.includes(':') ? `[${c.host}]` : c.host}:${c.port}`).replace(
    /\/+$/,
    '',
  );
  return Object.freeze({ ...c, baseUrl, caPem, clientSecret });
};
