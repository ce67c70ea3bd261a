/**
 * `npm run bench -- --scenario sync`: a directory sync end to end, directory -> the real agent ->
 * the real cloud (its store: users, groups, memberships), at customer scale.
 *
 * Seeds --users users and --groups groups (each user directly in three groups; every group past
 * the first 50 also sits in one of those 50, so memberships nest), starts the cloud and one agent,
 * and times:
 *   1. the full run the agent makes when it first connects (agent start -> run record ended),
 *   2. a delta run, asked for through the admin API, after --changed users' displayName changed.
 * Each phase reports wall time (split: the agent's read before the first page, the cloud's
 * ingestion of the pages), CPU seconds and peak RSS of the agent, the cloud and the directory
 * server, and checks the cloud's store holds what the directory does. The LAST line is one JSON object.
 *
 *   npm run bench -- --scenario sync [--directory openldap|samba] [--users 100000] [--groups 5000]
 *                    [--changed 1000] [--agent bundle|source] [--cpu-prof DIR] [--heap-prof DIR]
 *                    [--agent-node-options '--max-semi-space-size=1' (the service's flags: the default)]
 * The agent is the esbuild bundle customers download unless --agent source.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { AGENT_FILE, AGENT_NODE_FLAGS, agentPackage } from '../apps/cloud/src/admin/agent-package.ts';
import { type Child, spawnNode } from '../test/harness/children.ts';
import { pinnedFetch } from '../test/harness/pinned-fetch.ts';
import {
  type BenchTenant,
  type Cloud,
  cpuSeconds,
  createTenant,
  memMb,
  registerAgent,
  startAgent,
  startCloud,
} from './stack.ts';
import { type SyncDirectory, startSyncDirectory } from './sync-directory.ts';

export interface SyncBenchOptions {
  directory: 'openldap' | 'samba';
  users: number;
  groups: number;
  changed: number;
  /** 'bundle' (default): the esbuild bundle customers download; 'source': main.ts, type-stripped. */
  agent?: 'bundle' | 'source';
  /** Node flags for the bundled agent; default the service's (AGENT_NODE_FLAGS). */
  agentNodeOptions?: string;
  cpuProf?: string;
  heapProf?: string;
  quiet?: boolean;
}

interface Phase {
  wall_s: number;
  /** Agent start (full) or the API request (delta) -> the first page at the cloud. */
  read_s: number;
  /** First page at the cloud -> the run record ended. */
  ingest_s: number;
  agent_cpu_s: number;
  cloud_cpu_s: number;
  directory_cpu_s: number | null;
  agent_peak_rss_mb: number;
  cloud_peak_rss_mb: number;
  pages: number;
  counts: Record<string, number>;
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Resets a process's peak RSS (VmHWM) so the next phase reports its own peak. */
const resetPeak = (pid: number) => {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {}
};

const cpuModel = () => {
  try {
    return execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).toString().trim();
  } catch {
    return 'unknown';
  }
};

/** A client-credentials token for the tenant's admin API (hybrid_identity_admin: may ask for a sync). */
const adminApi = async (cloud: Cloud, tenant: BenchTenant) => {
  const app = await cloud.cli(
    'client',
    'create',
    '--tenant',
    tenant.tenantId,
    '--name',
    'Bench sync',
    '--grant-type',
    'client_credentials',
    '--admin-role',
    'hybrid_identity_admin',
  );
  const f = pinnedFetch(readFileSync(cloud.caFile));
  const basic = Buffer.from(`${app.clientId}:${app.clientSecret}`).toString('base64');
  const res = await f(tenant.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
    body: 'grant_type=client_credentials',
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`client_credentials token: ${res.status} ${JSON.stringify(body)}`);
  return async (path: string, method = 'GET') => {
    const r = await f(`${cloud.url}/${tenant.tenantId}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${body.access_token}` },
    });
    const json = (await r.json()) as Record<string, unknown>;
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  };
};

export const main = async (o: SyncBenchOptions): Promise<void> => {
  const say = (s: string) => {
    if (!o.quiet) process.stderr.write(`${s}\n`);
  };
  const work = mkdtempSync(join(tmpdir(), 'gh-bench-sync-'));
  const profile = (name: string) => {
    const opts: string[] = [];
    for (const [flag, dir] of [
      ['--cpu-prof', o.cpuProf],
      ['--heap-prof', o.heapProf],
    ] as const) {
      if (!dir) continue;
      mkdirSync(join(resolve(dir), name), { recursive: true });
      opts.push(flag, `${flag}-dir=${join(resolve(dir), name)}`);
    }
    return opts.length ? opts.join(' ') : undefined;
  };
  let directory: SyncDirectory | undefined;
  let cloud: Cloud | undefined;
  let agent: Child | undefined;
  let db: DatabaseSync | undefined;
  const cleanup = async () => {
    db?.close();
    await agent?.stop();
    await cloud?.stop();
    await directory?.stop();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    say(`directory: seeding ${o.directory} with ${o.users} users and ${o.groups} groups`);
    let t = performance.now();
    directory = await startSyncDirectory(o.directory, o.users, o.groups, work, say);
    const seedS = (performance.now() - t) / 1000;
    say(`  seeded in ${round(seedS, 1)} s`);

    cloud = await startCloud(join(work, 'cloud'), { nodeOptions: profile('cloud') });
    const tenant = await createTenant(cloud, directory.domain, work);
    const api = await adminApi(cloud, tenant);
    const stateDir = join(work, 'agent');
    await registerAgent(cloud, tenant.tenantId, stateDir);
    writeFileSync(
      join(stateDir, 'config.json'),
      JSON.stringify({
        directory: directory.agentDirectory,
        // Runs only when this script asks (the delta) or on first connect (the full one).
        sync: { intervalMinutes: 7 * 24 * 60, deltaIntervalMinutes: 0 },
        logLevel: 'warn',
      }),
    );
    // The agent as customers run it by default: one bundled file, no type stripping at start.
    const bundle = join(work, AGENT_FILE);
    if (o.agent !== 'source') writeFileSync(bundle, (await agentPackage(pino({ level: 'silent' }))).bytes);
    db = new DatabaseSync(join(cloud.dataDir, 'gatehouse.db'), { readOnly: true });
    const runRow = db.prepare(
      'SELECT id, mode, status, started_at, finished_at, pages, counts, error FROM sync_runs WHERE tenant_id = ? AND (? IS NULL OR id = ?) ORDER BY started_at DESC LIMIT 1',
    );
    type RunRow = {
      id: string;
      mode: string;
      status: string;
      started_at: number;
      finished_at: number | null;
      pages: number;
      counts: string;
      error: string | null;
    };
    /** Waits for the run (the latest, or `runId`) to end; polls the cloud's database. */
    const ended = async (runId: string | null, timeoutS: number): Promise<RunRow> => {
      const until = Date.now() + timeoutS * 1000;
      for (;;) {
        const r = runRow.get(tenant.tenantId, runId, runId) as RunRow | undefined;
        if (r && r.status !== 'running') return r;
        if (!agent?.running()) throw new Error(`the agent exited: ${agent?.output().slice(-2000)}`);
        // A failed read is logged and the agent waits for the next interval: no record ever ends.
        if (agent.output().includes('sync failed'))
          throw new Error(`the agent's sync failed: ${agent.output().slice(-2000)}`);
        if (Date.now() > until) throw new Error(`the run did not end in ${timeoutS} s: ${JSON.stringify(r)}`);
        await sleep(25);
      }
    };
    const pids = () => [agent!.pid, cloud!.child.pid, ...(directory?.pid ? [directory.pid] : [])];
    const phase = async (start: number, cpu0: number[], run: RunRow): Promise<Phase> => {
      if (run.status !== 'succeeded') throw new Error(`the ${run.mode} run ${run.status}: ${run.error}`);
      const cpu = pids().map((p, i) => cpuSeconds(p) - cpu0[i]!);
      return {
        wall_s: round((run.finished_at! - start) / 1000),
        read_s: round((run.started_at - start) / 1000),
        ingest_s: round((run.finished_at! - run.started_at) / 1000),
        agent_cpu_s: round(cpu[0]!),
        cloud_cpu_s: round(cpu[1]!),
        directory_cpu_s: directory?.pid ? round(cpu[2]!) : null,
        agent_peak_rss_mb: memMb(agent!.pid),
        cloud_peak_rss_mb: memMb(cloud!.child.pid),
        pages: run.pages,
        counts: JSON.parse(run.counts) as Record<string, number>,
      };
    };

    say('full run: starting the agent (it syncs everything on first connect)');
    resetPeak(cloud.child.pid);
    const cloudCpu0 = cpuSeconds(cloud.child.pid);
    const dirCpu0 = directory.pid ? cpuSeconds(directory.pid) : 0;
    const fullStart = Date.now();
    if (o.agent === 'source') agent = startAgent('agent', stateDir, profile('agent'));
    else {
      const nodeOptions = profile('agent');
      // The flags the systemd unit runs it with (agent-package.ts), unless --agent-node-options.
      const nodeArgs = (o.agentNodeOptions ?? AGENT_NODE_FLAGS.join(' ')).split(/\s+/).filter(Boolean);
      agent = spawnNode('agent', bundle, ['run', '--state-dir', stateDir], {
        env: { ...process.env, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) },
        nodeArgs,
      });
    }
    const full = await phase(fullStart, [0, cloudCpu0, dirCpu0], await ended(null, 1800));
    say(`  ${full.wall_s} s (read ${full.read_s} s, ingest ${full.ingest_s} s)`);
    const store = directory.expected;
    const count = (sql: string) =>
      Number((db!.prepare(sql).get(tenant.tenantId) as { n: number | bigint }).n);
    const inStore = {
      users: count("SELECT count(*) AS n FROM users WHERE tenant_id = ? AND source = 'synced'"),
      groups: count('SELECT count(*) AS n FROM groups WHERE tenant_id = ?'),
      memberships: count('SELECT count(*) AS n FROM group_members WHERE tenant_id = ?'),
    };
    for (const k of ['users', 'groups', 'memberships'] as const)
      if (inStore[k] !== store[k]) throw new Error(`the cloud holds ${inStore[k]} ${k}, not ${store[k]}`);

    say(`delta run: ${o.changed} users' displayName changed, then a delta run asked for`);
    t = performance.now();
    const changed = await directory.change(o.changed);
    const changeS = (performance.now() - t) / 1000;
    await sleep(1000); // the agent's idle heap settles before its peak is reset
    for (const p of pids()) resetPeak(p);
    const cpu0 = pids().map(cpuSeconds);
    const deltaStart = Date.now();
    const { runId } = (await api('/sync?mode=delta', 'POST')) as { runId: string };
    const delta = await phase(deltaStart, cpu0, await ended(runId, 600));
    say(`  ${delta.wall_s} s (read ${delta.read_s} s, ingest ${delta.ingest_s} s)`);
    if (delta.counts.usersSeen !== o.changed || delta.counts.usersUpdated !== o.changed)
      throw new Error(`the delta run saw ${JSON.stringify(delta.counts)}, not ${o.changed} changed users`);
    const names = db
      .prepare(
        `SELECT count(*) AS n FROM users WHERE tenant_id = ? AND display_name LIKE 'Changed %' AND upn IN (SELECT value FROM json_each(?))`,
      )
      .get(tenant.tenantId, JSON.stringify(changed)) as { n: number };
    if (Number(names.n) !== o.changed) throw new Error(`${names.n} changed display names in the cloud`);

    const report = {
      scenario: 'sync',
      directory: o.directory,
      users: o.users,
      groups: o.groups,
      memberships: store.memberships,
      changed: o.changed,
      agent: o.agent ?? 'bundle',
      agent_node_options: o.agent === 'source' ? null : (o.agentNodeOptions ?? AGENT_NODE_FLAGS.join(' ')),
      seed_s: round(seedS, 1),
      change_s: round(changeS, 1),
      full,
      delta,
      cpu_model: cpuModel(),
    };
    const row = (name: string, p: Phase) =>
      `${name.padEnd(6)} ${String(p.wall_s).padStart(8)} ${String(p.read_s).padStart(8)} ${String(p.ingest_s).padStart(8)} ` +
      `${String(p.agent_cpu_s).padStart(9)} ${String(p.cloud_cpu_s).padStart(9)} ${String(p.directory_cpu_s ?? '-').padStart(7)} ` +
      `${String(p.agent_peak_rss_mb).padStart(9)} ${String(p.cloud_peak_rss_mb).padStart(9)}`;
    say(
      `\n${o.directory}, ${o.users} users (agent: ${report.agent}), ${o.groups} groups, ${store.memberships} memberships; ${report.cpu_model}\n` +
        'run      wall s   read s ingest s agent CPU cloud CPU dir CPU agent MB  cloud MB\n' +
        `${row('full', full)}\n${row('delta', delta)}`,
    );
    await cleanup();
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } catch (err) {
    process.stderr.write(`bench sync: ${(err as Error).stack ?? String(err)}\n`);
    for (const ch of [cloud?.child, agent])
      if (ch) process.stderr.write(`--- ${ch.name}:\n${ch.output().split('\n').slice(-15).join('\n')}\n`);
    await cleanup().catch(() => {});
    process.exitCode = 1;
  }
};
