/**
 * `npm run bench`: pass-through sign-ins per second against the directory's own limit.
 *
 * Starts a directory (OpenLDAP with --users users, or Samba AD DC), the cloud and --agents real
 * agent processes, then runs bench/load.ts twice in its own process at the same concurrency:
 *   1. raw LDAP simple binds against the directory (the ceiling),
 *   2. password grants through the token endpoint (the pass-through path).
 * Reports both rates, their ratio, latencies, the latency the pass-through path adds, CPU
 * seconds per sign-in and peak RSS of the cloud and each agent. The LAST line is one JSON object.
 * First, bench/floor.ts measures the cloud path's primitives on this machine: the report carries
 * that floor and the cloud's ratio to it, which compares across machines where milliseconds do not.
 *
 *   npm run bench -- [--directory openldap|samba] [--users 1000] [--agents 1] [--concurrency 16]
 *                    [--duration 15] [--warmup 3] [--wrong 10] [--pool-size N] [--cpu-prof DIR]
 *                    [--floor-scale 1]
 *   npm run bench -- --check [--tolerance 1.25]  (the standard scenario against docs/benchmarks.md;
 *                                                 exit 1 when CPU per sign-in regressed, bench/check.ts)
 *   npm run bench -- --scenario idle-agents --count 5000      (see bench/idle-agents.ts)
 *   npm run bench -- --scenario sync --users 100000 --groups 5000 [--changed 1000]  (see bench/sync.ts)
 *   npm run bench -- --scenario scale-out-storm --count 2000  (see bench/scale-out-storm.ts)
 *   npm run bench -- --growth   the same on a database of 1,000 tenants, 100,000 users and 10 million
 *                               sign-in log rows (see bench/growth.ts)
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import { type Child, ROOT, runNode, spawnNode, waitFor } from '../test/harness/children.ts';
import { check, readReference } from './check.ts';
import { type Directory, startDirectory } from './directory.ts';
import type { FloorReport } from './floor.ts';
import { type GrowthSize, seedGrowth } from './growth.ts';
import type { LoadResult, LoadSpec } from './load.ts';
import {
  activeAgents,
  type Cloud,
  cpuSeconds,
  createTenant,
  dbStatements,
  memMb,
  pgStats,
  registerAgent,
  startAgent,
  startCloud,
} from './stack.ts';

const { values: a } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'signin' },
    directory: { type: 'string', default: 'openldap' },
    users: { type: 'string' },
    agents: { type: 'string', default: '1' },
    nodes: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '16' },
    duration: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '3' },
    wrong: { type: 'string', default: '10' },
    'pool-size': { type: 'string' },
    'cpu-prof': { type: 'string' },
    count: { type: 'string', default: '1000' },
    groups: { type: 'string', default: '5000' },
    changed: { type: 'string', default: '1000' },
    'heap-prof': { type: 'string' },
    agent: { type: 'string', default: 'bundle' },
    'agent-node-options': { type: 'string' },
    procs: { type: 'string', default: '2' },
    quiet: { type: 'boolean', default: false },
    'floor-scale': { type: 'string', default: '1' },
    check: { type: 'boolean', default: false },
    tolerance: { type: 'string', default: '1.25' },
    growth: { type: 'boolean', default: false },
    'growth-tenants': { type: 'string', default: '1000' },
    'growth-users': { type: 'string', default: '100000' },
    'growth-signins': { type: 'string', default: '10000000' },
  },
});

if (a.scenario === 'idle-agents') {
  await import('./idle-agents.ts').then((m) => m.main(Number(a.count), Number(a.procs)));
  process.exit(0);
}
if (a.scenario === 'sync') {
  if (a.directory !== 'openldap' && a.directory !== 'samba') throw new Error('--directory openldap|samba');
  await import('./sync.ts').then((m) =>
    m.main({
      directory: a.directory as 'openldap' | 'samba',
      users: Number(a.users ?? 100_000),
      groups: Number(a.groups),
      changed: Number(a.changed),
      agent: a.agent === 'source' ? 'source' : 'bundle',
      agentNodeOptions: a['agent-node-options'],
      cpuProf: a['cpu-prof'],
      heapProf: a['heap-prof'],
      quiet: a.quiet,
    }),
  );
  process.exit(process.exitCode ?? 0);
}
if (a.scenario === 'scale-out-storm') {
  await import('./scale-out-storm.ts').then((m) => m.main(Number(a.count), Number(a.procs)));
  process.exit(0);
}
if (a.scenario !== 'signin') throw new Error(`unknown --scenario ${a.scenario}`);
if (a.directory !== 'openldap' && a.directory !== 'samba') throw new Error('--directory openldap|samba');
// The reference in docs/benchmarks.md is for the standard scenario only.
if (
  a.check &&
  (a.directory !== 'openldap' ||
    a.agents !== '1' ||
    a.nodes !== '1' ||
    a.concurrency !== '16' ||
    a.wrong !== '10' ||
    (a.users ?? '1000') !== '1000' ||
    a['pool-size'] ||
    a['cpu-prof'] ||
    a.growth)
) {
  throw new Error('--check runs the standard scenario: only --duration, --warmup and --tolerance may change');
}

const PASSWORD = 'Bench-Passw0rd!1';
const agents = Number(a.agents);
/** More than one: cloud nodes on a shared PostgreSQL and NATS (the scale-out shape). */
const nodes = Number(a.nodes);
const concurrency = Number(a.concurrency);
const say = (s: string) => {
  if (!a.quiet) process.stderr.write(`${s}\n`);
};
const work = mkdtempSync(join(tmpdir(), 'gh-bench-'));
const profDir = a['cpu-prof'] ? resolve(a['cpu-prof']) : undefined;
const nodeOptions = (name: string) => {
  if (!profDir) return undefined;
  mkdirSync(join(profDir, name), { recursive: true });
  return `--cpu-prof --cpu-prof-dir=${join(profDir, name)}`;
};

/** Runs bench/load.ts; `onLine` sees `measuring` and `done` as they come. */
const load = async (
  spec: LoadSpec,
  onLine: (line: string, pid: number) => void = () => {},
): Promise<LoadResult> => {
  const child: Child = spawnNode('load', join(ROOT, 'bench/load.ts'), [JSON.stringify(spec)], {
    onOutput: (s) => {
      for (const l of s.split('\n')) if (l === 'measuring' || l === 'done') onLine(l, child.pid);
    },
  });
  const code = await child.exited;
  const lines = child.output().trim().split('\n');
  if (code !== 0) throw new Error(`load generator exited ${code}: ${lines.slice(-10).join('\n')}`);
  return JSON.parse(lines.at(-1)!) as LoadResult;
};

const children: Child[] = [];
const clouds: Cloud[] = [];
let directory: Directory | undefined;
let pgDb: { url: string; drop(): Promise<void> } | null = null;
const cleanup = async () => {
  await Promise.all(children.map((c) => c.stop()));
  await Promise.all(clouds.map((c) => c.stop()));
  await directory?.stop();
  await pgDb?.drop();
  rmSync(work, { recursive: true, force: true });
};

/** One SQL query on the cloud's database, SQLite file or PostgreSQL ($1-style parameters). */
const query = async <T>(sql: string, params: unknown[]): Promise<T> => {
  if (pgDb) {
    const pg = (await import('pg')).default;
    const c = new pg.Client({ connectionString: pgDb.url });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows[0] as T;
    } finally {
      await c.end();
    }
  }
  const db = new DatabaseSync(join(clouds[0]!.dataDir, 'gatehouse.db'), { readOnly: true });
  try {
    return db.prepare(sql.replace(/\$\d+/g, '?')).get(...(params as string[])) as T;
  } finally {
    db.close();
  }
};

/** bench/floor.ts in its own process, before anything else of ours runs. */
const measureFloor = async (): Promise<FloorReport> => {
  const r = await runNode(join(ROOT, 'bench/floor.ts'), ['--scale', String(a['floor-scale'])]);
  if (r.code !== 0) throw new Error(`bench/floor.ts exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as FloorReport;
};

try {
  say("floor: the cloud path's primitives on this machine (bench/floor.ts)");
  const floor = await measureFloor();
  say(`  ${floor.floor_cloud_cpu_ms} ms of cloud CPU per sign-in at least (${floor.cpu_model})`);
  say(`directory: starting ${a.directory}`);
  directory = await startDirectory(a.directory, a.users, work, PASSWORD);
  let shared: NodeJS.ProcessEnv = {};
  if (nodes > 1) {
    const { createTempDatabase } = await import('../test/harness/postgres.ts');
    const { NATS_URL, natsAvailable } = await import('../test/harness/cluster.ts');
    pgDb = await createTempDatabase();
    if (!pgDb || !(await natsAvailable())) throw new Error('--nodes needs PostgreSQL and NATS running');
    shared = {
      GATEHOUSE_CLOUD_DATABASE: pgDb.url,
      GATEHOUSE_CLOUD_NATS_URL: NATS_URL,
      GATEHOUSE_CLOUD_SECRET_KEY: randomBytes(32).toString('base64'),
    };
  }
  say(`cloud: starting ${nodes} node(s)`);
  // Nodes share the data directory (service TLS); with PostgreSQL it holds nothing else.
  for (let n = 0; n < nodes; n++) {
    const name = n === 0 ? 'cloud' : `cloud-${n}`;
    clouds.push(
      await startCloud(join(work, 'cloud'), {
        name,
        nodeOptions: nodeOptions(name),
        env: { ...shared, ...(nodes > 1 ? { GATEHOUSE_CLOUD_NODE_ID: `node-${n}` } : {}) },
      }),
    );
  }
  const cloud = clouds[0]!;
  const tenant = await createTenant(cloud, directory.domain, work);
  say(`agents: registering ${agents}`);
  for (let i = 0; i < agents; i++) {
    const stateDir = join(work, `agent-${i}`);
    // Agents spread over the nodes: each holds its connection to the node it registered at.
    await registerAgent(cloud, tenant.tenantId, stateDir, clouds[i % nodes]);
    writeFileSync(
      join(stateDir, 'config.json'),
      JSON.stringify({
        directory: {
          ...directory.agentDirectory,
          ...(a['pool-size'] ? { poolSize: Number(a['pool-size']) } : {}),
        },
        logLevel: 'warn',
      }),
    );
    children.push(startAgent(`agent-${i}`, stateDir, nodeOptions(`agent-${i}`)));
  }
  const c = cloud;
  await waitFor(
    'the agents to be active',
    async () => (await activeAgents(c, tenant.tenantId)) === agents,
    60_000,
    250,
  );
  await cloud.cli('settings', 'set', '--tenant', tenant.tenantId, '--pta', 'on', '--legacy-auth', 'on');
  await waitFor(
    'the first sync',
    async () =>
      Number(
        (
          await query<{ n: number }>(
            "SELECT count(*) AS n FROM users WHERE tenant_id = $1 AND source <> 'cloud'",
            [tenant.tenantId],
          )
        ).n,
      ) >= directory!.upns.length,
    120_000,
    250,
  );

  let growth: (GrowthSize & { seed_s: number; sync_s: number }) | null = null;
  if (a.growth) {
    if (nodes > 1) throw new Error('--growth seeds the embedded SQLite database: one node only');
    const size = {
      tenants: Number(a['growth-tenants']),
      users: Number(a['growth-users']),
      signins: Number(a['growth-signins']),
    };
    say(`growth: seeding ${size.tenants} tenants, ${size.users} users, ${size.signins} sign-in log rows`);
    const { seconds, syncSeconds } = seedGrowth(join(cloud.dataDir, 'gatehouse.db'), tenant.tenantId, size);
    say(`  seeded in ${seconds} s, flushed to disk in ${syncSeconds} s`);
    growth = { ...size, seed_s: seconds, sync_s: syncSeconds };
  }

  const common = {
    concurrency,
    warmupS: Number(a.warmup),
    durationS: Number(a.duration),
    wrongPct: Number(a.wrong),
    password: PASSWORD,
  };
  say(
    `raw binds: ${directory.kind}, concurrency ${concurrency}, ${a.duration} s after ${a.warmup} s warm-up`,
  );
  const raw = await load({ ...common, mode: 'ldap', users: directory.bindDns, ldapUrl: directory.url });
  say(`  ${raw.perSecond}/s, p50 ${raw.p50} ms, p99 ${raw.p99} ms`);

  say('pass-through sign-ins: password grant through the token endpoint');
  // CPU is read for every cloud node, every agent, the load generator and the directory server.
  const pids = [...clouds.map((c) => c.child.pid), ...children.map((ch) => ch.pid)];
  const base = nodes + agents;
  let before: number[] = [];
  let after: number[] = [];
  let windowStart = Date.now();
  // Scale-out: commits and row changes in the database over the same window as the CPU.
  const pgUrl = pgDb?.url;
  let pgBefore: Promise<{ commits: number; rows: number }> | undefined;
  let pgAfter: Promise<{ commits: number; rows: number }> | undefined;
  const statements = () => Promise.all(clouds.map((c) => dbStatements(c).catch(() => ({}))));
  let stBefore: Promise<Record<string, number>[]> | undefined;
  let stAfter: Promise<Record<string, number>[]> | undefined;
  const pt = await load(
    {
      ...common,
      mode: 'grant',
      users: directory.upns,
      // Each node's own origin: the token endpoint the tenant advertises names the public URL stored
      // in the database (the last node started), and sent every sign-in to that one node.
      tokenUrls: clouds.map((c) => `${c.url}${new URL(tenant.tokenUrl).pathname}`),
      caFile: cloud.caFile,
      clientId: tenant.clientId,
    },
    (line, loadPid) => {
      if (pids.length === base) pids.push(loadPid, ...(directory?.pid ? [directory.pid] : []));
      if (line === 'measuring') {
        before = pids.map(cpuSeconds);
        windowStart = Date.now();
        if (pgUrl) pgBefore = pgStats(pgUrl);
        stBefore = statements();
      } else {
        after = pids.map(cpuSeconds);
        // pg_stat_database is flushed about once a second: read it once that has happened.
        if (pgUrl) pgAfter = new Promise((r) => setTimeout(r, 1500)).then(() => pgStats(pgUrl));
        stAfter = statements();
      }
    },
  );
  // Where the time goes, from the sign-in log: the authenticator's total, the agent's and the directory's.
  await new Promise((r) => setTimeout(r, 500));
  const split = await query<{ total: number; agent: number; dir: number }>(
    'SELECT avg(total_ms) AS total, avg(agent_ms) AS agent, avg(directory_ms) AS dir FROM signins WHERE at >= $1',
    [windowStart],
  );
  const round = (x: unknown) => Math.round(Number(x ?? 0) * 1000) / 1000;
  const cpu = pids.map((_, i) => (after[i] ?? 0) - (before[i] ?? 0));
  const signins = pt.correct + pt.wrong;
  const perSignInMs = (s: number) => Math.round((s / Math.max(1, signins)) * 1e6) / 1e3;
  const rss = pids.slice(0, base).map((p) => memMb(p));
  const [pg0, pg1] = pgBefore && pgAfter ? await Promise.all([pgBefore, pgAfter]) : [];
  const perSignIn = (n: number) => Math.round((n / Math.max(1, signins)) * 100) / 100;
  const [st0, st1] = stBefore && stAfter ? await Promise.all([stBefore, stAfter]) : [[], []];
  const byOp: Record<string, number> = {};
  for (const [i, after1] of st1.entries())
    for (const [op, n] of Object.entries(after1)) byOp[op] = (byOp[op] ?? 0) + n - (st0[i]?.[op] ?? 0);
  const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
  say(`  ${pt.perSecond}/s, p50 ${pt.p50} ms, p99 ${pt.p99} ms`);
  if (Object.keys(pt.errors).length || pt.unexpected)
    say(`  errors: ${JSON.stringify(pt.errors)} unexpected answers: ${pt.unexpected}`);

  const report = {
    directory: directory.kind,
    agents,
    nodes,
    users: directory.upns.length,
    concurrency,
    duration_s: Number(a.duration),
    wrong_pct: Number(a.wrong),
    raw_binds_per_s: raw.perSecond,
    signins_per_s: pt.perSecond,
    ratio: Math.round((pt.perSecond / Math.max(1, raw.perSecond)) * 1000) / 1000,
    p50_ms: pt.p50,
    p95_ms: pt.p95,
    p99_ms: pt.p99,
    p50_correct_ms: pt.p50Correct,
    p99_correct_ms: pt.p99Correct,
    raw_p50_ms: raw.p50,
    raw_p95_ms: raw.p95,
    raw_p99_ms: raw.p99,
    added_p50_ms: Math.round((pt.p50 - raw.p50) * 1000) / 1000,
    cloud_cpu_ms_per_signin: perSignInMs(sum(cpu.slice(0, nodes))),
    floor_cloud_cpu_ms: floor.floor_cloud_cpu_ms,
    cloud_to_floor_ratio:
      Math.round((perSignInMs(sum(cpu.slice(0, nodes))) / floor.floor_cloud_cpu_ms) * 100) / 100,
    floor_parts_us: floor.floor_parts_us,
    es256_jose_us: floor.es256_jose_us,
    // Each node's CPU over the sign-ins it served (the load generator spreads them evenly).
    cloud_cpu_ms_per_signin_by_node: cpu.slice(0, nodes).map((c) => perSignInMs(c * nodes)),
    pg_commits_per_signin: pg0 && pg1 ? perSignIn(pg1.commits - pg0.commits) : null,
    pg_rows_per_signin: pg0 && pg1 ? perSignIn(pg1.rows - pg0.rows) : null,
    db_statements_per_signin: Object.fromEntries(Object.entries(byOp).map(([op, n]) => [op, perSignIn(n)])),
    agent_cpu_ms_per_signin: perSignInMs(sum(cpu.slice(nodes, base))),
    load_cpu_ms_per_signin: perSignInMs(cpu[base] ?? 0),
    directory_cpu_ms_per_signin: directory.pid ? perSignInMs(cpu[base + 1] ?? 0) : null,
    signin_total_ms_mean: round(split.total),
    agent_ms_mean: round(split.agent),
    directory_ms_mean: round(split.dir),
    cloud_rss_mb: Math.max(...rss.slice(0, nodes)),
    agent_rss_mb: Math.max(...rss.slice(nodes, base)),
    growth,
    errors: sum(Object.values(pt.errors)) + sum(Object.values(raw.errors)),
    unexpected: pt.unexpected + raw.unexpected,
    cpu_model: floor.cpu_model,
  };
  say(
    `\nratio ${report.ratio}  added p50 ${report.added_p50_ms} ms  cloud ${report.cloud_cpu_ms_per_signin} ms CPU/sign-in, ` +
      `agents ${report.agent_cpu_ms_per_signin} ms CPU/sign-in  peak RSS cloud ${report.cloud_rss_mb} MB, agent ${report.agent_rss_mb} MB`,
  );
  await cleanup();
  if (a.check) {
    const verdict = check(report, readReference(ROOT), Number(a.tolerance));
    say(`\ncheck (tolerance ${a.tolerance}, this machine's floor / the reference's: ${verdict.scale}):`);
    for (const l of verdict.lines) {
      say(
        `  ${l.ok ? 'ok  ' : 'FAIL'} ${l.field} ${l.measured} ms (limit ${l.limit}, reference ${l.reference})`,
      );
    }
    process.stdout.write(`${JSON.stringify({ ...report, check: verdict })}\n`);
    process.exit(verdict.ok ? 0 : 1);
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  for (const ch of [...clouds.map((c) => c.child), ...children]) {
    if (ch) process.stderr.write(`--- ${ch.name}:\n${ch.output().split('\n').slice(-15).join('\n')}\n`);
  }
  await cleanup().catch(() => {});
  process.exit(1);
}
