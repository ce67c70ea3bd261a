/**
 * The pieces a benchmark starts, as a customer would run them: the cloud as its own process
 * (main.ts, own data directory, embedded SQLite), set up with the operator CLI, and agents
 * registered with one-time tokens. Plus /proc readers for CPU time and memory of a process.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { type Child, ROOT, registerAgentCli, runNode, spawnNode, waitFor } from '../test/harness/children.ts';
import { pinnedFetch } from '../test/harness/pinned-fetch.ts';

export const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** CPU seconds (user + system) a process has used so far. */
export const cpuSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at ") ".
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
};

/** A /proc/PID/status memory field (VmHWM: peak RSS, VmRSS: current) in MiB. */
export const memMb = (pid: number, field: 'VmHWM' | 'VmRSS' = 'VmHWM'): number => {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : 0;
};

export interface Cloud {
  child: Child;
  url: string;
  dataDir: string;
  caFile: string;
  env: NodeJS.ProcessEnv;
  /** The operator CLI on this cloud's data directory; throws on a non-zero exit. */
  cli(...args: string[]): Promise<Record<string, unknown>>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export const startCloud = async (
  dataDir: string,
  opts: { nodeOptions?: string; logLevel?: string; env?: NodeJS.ProcessEnv; name?: string } = {},
): Promise<Cloud> => {
  const port = await freePort();
  const gatewayPort = await freePort();
  const metricsPort = await freePort();
  const url = `https://localhost:${port}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...opts.env,
    GATEHOUSE_CLOUD_DATA_DIR: dataDir,
    GATEHOUSE_CLOUD_PORT: String(port),
    GATEHOUSE_CLOUD_GATEWAY_PORT: String(gatewayPort),
    GATEHOUSE_CLOUD_METRICS_PORT: String(metricsPort),
    GATEHOUSE_CLOUD_PUBLIC_URL: url,
    GATEHOUSE_CLOUD_LOG_LEVEL: opts.logLevel ?? 'warn',
  };
  const caFile = join(dataDir, 'tls', 'ca.pem');
  const launch = async () => {
    const child = spawnNode(opts.name ?? 'cloud', join(ROOT, 'apps/cloud/src/main.ts'), [], {
      env: { ...env, ...(opts.nodeOptions ? { NODE_OPTIONS: opts.nodeOptions } : {}) },
    });
    const ca = await waitFor(
      'the cloud CA',
      () => {
        if (!child.running()) throw new Error(`the cloud exited: ${child.output().slice(-2000)}`);
        const pem = readFileSync(caFile, 'utf8');
        return pem.includes('-----END CERTIFICATE-----') && pem;
      },
      30_000,
      100,
    );
    const f = pinnedFetch(ca);
    await waitFor(
      'the cloud to answer',
      async () => {
        if (!child.running()) throw new Error(`the cloud exited: ${child.output().slice(-2000)}`);
        return (await f(`${url}/healthz`)).ok;
      },
      30_000,
      100,
    );
    return child;
  };
  const cloud: Cloud = {
    child: await launch(),
    url,
    dataDir,
    caFile,
    env,
    async cli(...args) {
      const r = await runNode(join(ROOT, 'apps/cloud/src/cli.ts'), [...args, '--json'], { env });
      if (r.code !== 0) throw new Error(`gatehouse ${args.slice(0, 2).join(' ')}: ${r.stderr || r.stdout}`);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    },
    async restart() {
      await cloud.child.stop();
      cloud.child = await launch();
    },
    stop: () => cloud.child.stop(),
  };
  return cloud;
};

export interface BenchTenant {
  tenantId: string;
  clientId: string;
  tokenUrl: string;
}

/** A tenant with a verified domain and a public client allowed the password grant. */
export const createTenant = async (cloud: Cloud, domain: string, workDir: string): Promise<BenchTenant> => {
  const adminFile = join(workDir, 'admin-password');
  writeFileSync(adminFile, `${randomBytes(12).toString('base64url')}!9a`, { mode: 0o600 });
  const t = await cloud.cli(
    'tenant',
    'create',
    '--name',
    'Bench',
    '--domain',
    domain,
    '--admin-upn',
    `bench-admin@${domain}`,
    '--admin-password-file',
    adminFile,
  );
  const tenantId = String(t.tenantId);
  await cloud.cli('domain', 'verify', '--tenant', tenantId, '--name', domain, '--force');
  const client = await cloud.cli(
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Bench',
    '--redirect-uri',
    'http://127.0.0.1/unused',
    '--public',
    '--grant-type',
    'password',
  );
  const issuer = String(client.issuer ?? `${cloud.url}/${tenantId}/v2.0`);
  const meta = (await (
    await pinnedFetch(readFileSync(cloud.caFile))(`${issuer}/.well-known/openid-configuration`)
  ).json()) as { token_endpoint: string };
  return { tenantId, clientId: String(client.clientId), tokenUrl: meta.token_endpoint };
};

/** Registers one agent with a fresh one-time token (the real `register` command), at `at` (default: `cloud`). */
export const registerAgent = async (
  cloud: Cloud,
  tenantId: string,
  stateDir: string,
  at: Cloud = cloud,
): Promise<void> => {
  const { token } = (await cloud.cli('token', 'create', '--tenant', tenantId)) as { token: string };
  const r = await registerAgentCli({ cloudUrl: at.url, caFile: at.caFile, token, stateDir });
  if (r.code !== 0) throw new Error(`agent register: ${r.stderr || r.stdout}`);
};

export const startAgent = (name: string, stateDir: string, nodeOptions?: string): Child =>
  spawnNode(name, join(ROOT, 'apps/agent/src/main.ts'), ['run', '--state-dir', stateDir], {
    env: { ...process.env, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) },
  });

export const activeAgents = async (cloud: Cloud, tenantId: string): Promise<number> => {
  const list = (await cloud.cli('agents', 'list', '--tenant', tenantId)) as unknown as { status: string }[];
  return list.filter((a) => a.status === 'active').length;
};

/** The PostgreSQL database's commits and row changes so far (pg_stat_database; flushed about once a second). */
export const pgStats = async (url: string): Promise<{ commits: number; rows: number }> => {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query(
      `SELECT xact_commit AS commits, tup_inserted + tup_updated + tup_deleted AS rows
         FROM pg_stat_database WHERE datname = current_database()`,
    );
    return { commits: Number(rows[0].commits), rows: Number(rows[0].rows) };
  } finally {
    await c.end();
  }
};

/** Statements the cloud process ran so far, by kind (its /metrics: gatehouse_db_query_duration_seconds). */
export const dbStatements = async (cloud: Cloud): Promise<Record<string, number>> => {
  const port = cloud.env.GATEHOUSE_CLOUD_METRICS_PORT;
  const text = await (
    await pinnedFetch(readFileSync(cloud.caFile))(`https://127.0.0.1:${port}/metrics`)
  ).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^gatehouse_db_query_duration_seconds_count\{([^}]*)\} (\d+)/gm)) {
    const op = /op="([^"]+)"/.exec(m[1]!)?.[1] ?? 'other';
    out[op] = (out[op] ?? 0) + Number(m[2]);
  }
  return out;
};
