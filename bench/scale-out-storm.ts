/**
 * `npm run bench -- --scenario scale-out-storm --count N [--procs P]`: N idle agents on two cloud
 * nodes (PostgreSQL + NATS, the scale-out shape), through what happens to a fleet over a node's
 * life. The agents are real mutual-TLS WebSockets held by P load processes (bench/idle-load.ts,
 * Hello and Heartbeat, both nodes' gateway URLs, moves answered as the agent does).
 *
 *   1. idle on one node: all N on node 0 (node 1 stopped); CPU, commits and row writes per second
 *      (presence, now one batch per node every presenceWriteMs, instead of a row per heartbeat);
 *   2. node 1 starts: node 0 asks half of them to move; time until they are spread, CPU on both;
 *   3. kill -9 of node 1: its agents come back to node 0 (the reconnect storm); time until all are
 *      back, node 0's CPU burst, the database's commits;
 *   4. node 1 restarts: rebalanced again.
 * The LAST line is one JSON object.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_AGENTS_PER_TENANT } from '@gatehouse/protocol';
import { openState } from '../apps/cloud/src/bootstrap.ts';
import { loadCloudConfig } from '../apps/cloud/src/config.ts';
import { createRegistrationToken } from '../apps/cloud/src/store/registration-tokens.ts';
import { createTenant as createTenantRow } from '../apps/cloud/src/store/tenants.ts';
import { type Child, ROOT, spawnNode, waitFor } from '../test/harness/children.ts';
import { kill9, NATS_URL, natsAvailable } from '../test/harness/cluster.ts';
import { createTempDatabase } from '../test/harness/postgres.ts';
import { type Cloud, cpuSeconds, memMb, pgStats, startCloud } from './stack.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r1 = (x: number) => Math.round(x * 10) / 10;

export const main = async (count: number, procs = 2): Promise<void> => {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const work = mkdtempSync(join(tmpdir(), 'gh-bench-storm-'));
  const pgDb = await createTempDatabase();
  if (!pgDb || !(await natsAvailable())) throw new Error('scale-out-storm needs PostgreSQL and NATS running');
  const children: Child[] = [];
  const nodes: Cloud[] = [];
  try {
    const shared = {
      GATEHOUSE_CLOUD_DATABASE: pgDb.url,
      GATEHOUSE_CLOUD_NATS_URL: NATS_URL,
      GATEHOUSE_CLOUD_SECRET_KEY: randomBytes(32).toString('base64'),
    };
    for (let n = 0; n < 2; n++) {
      const env = { ...shared, GATEHOUSE_CLOUD_NODE_ID: `node-${n}` };
      nodes.push(await startCloud(join(work, 'cloud'), { name: `cloud-${n}`, env, logLevel: 'info' }));
    }
    const [n0, n1] = nodes as [Cloud, Cloud];
    // Node 1's ports are known now; it is started again in step 2.
    await n1.stop();
    const config = loadCloudConfig(n0.env);
    const { heartbeatMs } = config;
    // Absent before presence was batched (every heartbeat was written then).
    const presenceWriteMs = (config as { presenceWriteMs?: number }).presenceWriteMs ?? 0;
    const { db, secrets } = await openState(config);
    const tenants = Math.ceil(count / MAX_AGENTS_PER_TENANT);
    say(`scale-out storm: ${count} idle agents in ${tenants} tenants, ${procs} load processes, 2 nodes`);
    const tokens: string[] = [];
    for (let t = 0; t < tenants; t++) {
      const { tenantId } = await createTenantRow(
        { db, secrets, now: Date.now },
        {
          name: `Storm ${t}`,
          domain: `t${t}.storm.test`,
          admin: { upn: `admin@t${t}.storm.test`, password: `${randomBytes(12).toString('base64url')}!9a` },
        },
      );
      for (let i = 0; i < MAX_AGENTS_PER_TENANT && tokens.length < count; i++)
        tokens.push((await createRegistrationToken(db, tenantId, 'bench', 3600, Date.now())).token);
    }
    await db.destroy();

    const gatewayUrls = nodes.map((n) => `wss://localhost:${n.env.GATEHOUSE_CLOUD_GATEWAY_PORT}`);
    const goFile = join(work, 'go');
    const status = new Map<number, { registered: number; connected: number; moves: number; on: number[] }>();
    const sum = (f: (s: { registered: number; connected: number; moves: number; on: number[] }) => number) =>
      [...status.values()].reduce((s, v) => s + f(v), 0);
    for (let p = 0; p < procs; p++) {
      const tokensFile = join(work, `tokens-${p}`);
      writeFileSync(tokensFile, tokens.filter((_, i) => i % procs === p).join('\n'), { mode: 0o600 });
      const stateRoot = join(work, `agents-${p}`);
      mkdirSync(stateRoot);
      status.set(p, { registered: 0, connected: 0, moves: 0, on: [0, 0] });
      const spec = { cloudUrl: n0.url, caFile: n0.caFile, tokensFile, stateRoot, goFile, gatewayUrls };
      children.push(
        spawnNode(`idle-${p}`, join(ROOT, 'bench/idle-load.ts'), [JSON.stringify(spec)], {
          onOutput: (s) => {
            const st = status.get(p)!;
            for (const m of s.matchAll(/registered (\d+)/g)) st.registered = Number(m[1]);
            for (const m of s.matchAll(/connected (\d+) welcomes \d+ moves (\d+) on (\d+),(\d+)/g)) {
              st.connected = Number(m[1]);
              st.moves = Number(m[2]);
              st.on = [Number(m[3]), Number(m[4])];
            }
          },
        }),
      );
    }
    const alive = () => {
      for (const c of children)
        if (!c.running()) throw new Error(`${c.name} exited: ${c.output().slice(-1500)}`);
      return true;
    };
    const on = (i: number) => sum((s) => s.on[i]!);
    const cpu = () => nodes.map((n) => (n.child.running() ? cpuSeconds(n.child.pid) : 0));
    await waitFor('registrations', () => alive() && sum((s) => s.registered) === count, 30 * 60_000, 500);
    writeFileSync(goFile, '');
    await waitFor('connections', () => alive() && on(0) === count, 10 * 60_000, 100);
    say(`  ${count} connected to node 0`);

    // 1. Idle on one node: heartbeats, and presence in one batch per presenceWriteMs.
    await sleep(Math.min(heartbeatMs, 5000));
    const window = Math.max(2 * heartbeatMs, presenceWriteMs + 5000, 20_000);
    const idle0 = { cpu: cpu()[0]!, pg: await pgStats(pgDb.url) };
    await sleep(window);
    const idle1 = { cpu: cpu()[0]!, pg: await pgStats(pgDb.url) };
    const perS = (x: number) => r1(x / (window / 1000));
    const idle = {
      cpu_pct: r1(((idle1.cpu - idle0.cpu) * 100) / (window / 1000)),
      commits_per_s: perS(idle1.pg.commits - idle0.pg.commits),
      rows_per_s: perS(idle1.pg.rows - idle0.pg.rows),
      rss_mb: memMb(n0.child.pid, 'VmRSS'),
    };
    say(`  idle: ${JSON.stringify(idle)}`);
    // To measure an older tree, which has no rebalancing: stop after the idle phase.
    if (process.env.BENCH_IDLE_ONLY) {
      process.stdout.write(
        `${JSON.stringify({ scenario: 'scale-out-storm', count, idle_one_node: idle })}\n`,
      );
      return;
    }

    /** Starts node 1 and waits until the agents are spread (each node within 5 % of half). */
    const rebalance = async (label: string) => {
      const moves0 = sum((s) => s.moves);
      const t0 = performance.now();
      const c0 = cpu()[0]!;
      await n1.restart();
      const started = performance.now();
      const c1Start = cpuSeconds(n1.child.pid);
      const pg0 = await pgStats(pgDb.url);
      await waitFor(
        `${label}: agents spread`,
        () => alive() && on(1) >= Math.floor(count * 0.45),
        10 * 60_000,
        100,
      );
      const spreadS = (performance.now() - started) / 1000;
      const [cpu0, cpu1] = cpu();
      const pg1 = await pgStats(pgDb.url);
      const r = {
        spread_s: r1(spreadS),
        on: [on(0), on(1)],
        moves: sum((s) => s.moves) - moves0,
        node0_cpu_s: r1(cpu0! - c0),
        node1_cpu_s: r1(cpu1! - c1Start),
        commits: pg1.commits - pg0.commits,
        restart_s: r1((started - t0) / 1000),
      };
      say(`  ${label}: ${JSON.stringify(r)}`);
      return r;
    };

    // 2. Node 1 starts: half of the agents move to it.
    const first = await rebalance('node 1 joins');
    await sleep(5000);

    // 3. kill -9 of node 1: its agents reconnect to node 0.
    const held = on(1);
    const c0 = cpu()[0]!;
    const pgK0 = await pgStats(pgDb.url);
    const killedAt = performance.now();
    await kill9(n1.child);
    await waitFor('the storm', () => alive() && on(0) === count, 10 * 60_000, 50);
    const stormS = (performance.now() - killedAt) / 1000;
    const stormCpu = cpu()[0]! - c0;
    await sleep(1500);
    const pgK1 = await pgStats(pgDb.url);
    const storm = {
      agents: held,
      back_s: r1(stormS),
      node0_cpu_s: r1(stormCpu),
      node0_cpu_pct: r1((stormCpu * 100) / stormS),
      cpu_ms_per_reconnect: r1((stormCpu * 1000) / Math.max(1, held)),
      commits: pgK1.commits - pgK0.commits,
    };
    say(`  storm: ${JSON.stringify(storm)}`);

    // 4. Node 1 restarts: rebalanced again.
    await sleep(3000);
    const again = await rebalance('node 1 restarts');
    await sleep(5000);
    const settled = [on(0), on(1)];

    const report = {
      scenario: 'scale-out-storm',
      count,
      procs,
      heartbeat_ms: heartbeatMs,
      presence_write_ms: presenceWriteMs,
      idle_one_node: idle,
      join: first,
      storm,
      restart: again,
      settled_on: settled,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await Promise.all(nodes.map((n) => n.stop().catch(() => {})));
    await pgDb.drop().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
};
