/**
 * `npm run bench -- --scenario idle-agents --count N [--procs P]`: N idle agents on one cloud node.
 *
 * N agents are registered through the real registration API (40 per tenant, the per-tenant
 * limit; tenants and one-time tokens made with the repository functions on the cloud's own
 * database) and held by P load processes (bench/idle-load.ts) as real mutual-TLS WebSockets
 * speaking Hello and Heartbeat. Reports the cloud's RSS per connection, its CPU on heartbeats,
 * and, after a cloud restart, the time until all N are connected again with the agent's own
 * jittered backoff. Also the idle RSS of one real agent process (against a small OpenLDAP).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_AGENTS_PER_TENANT } from '@gatehouse/protocol';
import pino from 'pino';
import { AGENT_FILE, agentPackage } from '../apps/cloud/src/admin/agent-package.ts';
import { openState } from '../apps/cloud/src/bootstrap.ts';
import { loadCloudConfig } from '../apps/cloud/src/config.ts';
import { createRegistrationToken } from '../apps/cloud/src/store/registration-tokens.ts';
import { createTenant as createTenantRow } from '../apps/cloud/src/store/tenants.ts';
import { type Child, ROOT, spawnNode, waitFor } from '../test/harness/children.ts';
import { startSlapd } from '../test/harness/slapd.ts';
import {
  activeAgents,
  cpuSeconds,
  createTenant,
  memMb,
  registerAgent,
  startAgent,
  startCloud,
} from './stack.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const main = async (count: number, procs = 2): Promise<void> => {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const work = mkdtempSync(join(tmpdir(), 'gh-bench-idle-'));
  const children: Child[] = [];
  const cloud = await startCloud(join(work, 'cloud'));
  const cleanup: Array<() => Promise<void>> = [
    async () => void (await Promise.all(children.map((c) => c.stop()))),
    () => cloud.stop(),
  ];
  try {
    const heartbeatMs = Number(loadCloudConfig(cloud.env).heartbeatMs);
    // Tenants and tokens straight into the cloud's database (one CLI process per token would
    // take longer than the benchmark); registration itself goes through the HTTPS API.
    const { db, secrets } = await openState(loadCloudConfig(cloud.env));
    const ctx = { db, secrets, now: Date.now };
    const tenants = Math.ceil(count / MAX_AGENTS_PER_TENANT);
    say(`idle agents: ${count} in ${tenants} tenants, ${procs} load processes`);
    const tokens: string[] = [];
    for (let t = 0; t < tenants; t++) {
      const { tenantId } = await createTenantRow(ctx, {
        name: `Idle ${t}`,
        domain: `t${t}.idle.test`,
        admin: { upn: `admin@t${t}.idle.test`, password: `${randomBytes(12).toString('base64url')}!9a` },
      });
      for (let i = 0; i < MAX_AGENTS_PER_TENANT && tokens.length < count; i++)
        tokens.push((await createRegistrationToken(db, tenantId, 'bench', 3600, Date.now())).token);
    }
    await db.destroy();

    const goFile = join(work, 'go');
    const status = new Map<number, { registered: number; connected: number; welcomes: number }>();
    const sum = (k: 'registered' | 'connected' | 'welcomes') =>
      [...status.values()].reduce((s, v) => s + v[k], 0);
    for (let p = 0; p < procs; p++) {
      const mine = tokens.filter((_, i) => i % procs === p);
      const tokensFile = join(work, `tokens-${p}`);
      writeFileSync(tokensFile, mine.join('\n'), { mode: 0o600 });
      const stateRoot = join(work, `agents-${p}`);
      mkdirSync(stateRoot);
      status.set(p, { registered: 0, connected: 0, welcomes: 0 });
      const spec = { cloudUrl: cloud.url, caFile: cloud.caFile, tokensFile, stateRoot, goFile };
      children.push(
        spawnNode(`idle-${p}`, join(ROOT, 'bench/idle-load.ts'), [JSON.stringify(spec)], {
          onOutput: (s) => {
            const st = status.get(p)!;
            for (const m of s.matchAll(/registered (\d+)/g)) st.registered = Number(m[1]);
            for (const m of s.matchAll(/connected (\d+) welcomes (\d+)/g)) {
              st.connected = Number(m[1]);
              st.welcomes = Number(m[2]);
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
    const t0 = performance.now();
    await waitFor('registrations', () => alive() && sum('registered') === count, 30 * 60_000, 500);
    say(`  registered ${count} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await sleep(3000);
    const rss0 = memMb(cloud.child.pid, 'VmRSS');
    const t1 = performance.now();
    writeFileSync(goFile, '');
    await waitFor('connections', () => alive() && sum('connected') === count, 10 * 60_000, 100);
    const connectS = (performance.now() - t1) / 1000;
    say(`  ${count} connected in ${connectS.toFixed(1)} s`);

    // Idle: only heartbeats (and pings) for two heartbeat periods.
    await sleep(Math.min(heartbeatMs, 5000));
    const window = Math.max(2 * heartbeatMs, 20_000);
    const cpu0 = cpuSeconds(cloud.child.pid);
    await sleep(window);
    const cpu = cpuSeconds(cloud.child.pid) - cpu0;
    const rss1 = memMb(cloud.child.pid, 'VmRSS');
    const heartbeats = (count * window) / heartbeatMs;
    say(
      `  cloud RSS ${rss0} -> ${rss1} MB; ${((cpu * 100) / (window / 1000)).toFixed(1)}% CPU on heartbeats`,
    );

    const hwm = memMb(cloud.child.pid);

    // Restart the cloud: every agent comes back with its own jittered backoff.
    const welcomes0 = sum('welcomes');
    const t2 = performance.now();
    await cloud.restart();
    const t3 = performance.now();
    await waitFor(
      'reconnections',
      () => alive() && sum('connected') === count && sum('welcomes') - welcomes0 >= count,
      10 * 60_000,
      100,
    );
    const reconnectS = (performance.now() - t2) / 1000;
    say(
      `  restart: all ${count} back ${reconnectS.toFixed(1)} s after the stop (${((performance.now() - t3) / 1000).toFixed(1)} s after the new node answered)`,
    );
    await Promise.all(children.splice(0).map((c) => c.stop()));

    // One real agent process, idle, against a small directory.
    say('  one real agent process, idle');
    const slapd = await startSlapd({
      users: Array.from({ length: 20 }, (_, i) => ({
        uid: `u${i}`,
        password: 'x-Passw0rd!',
        mail: `u${i}@real.test`,
      })),
    });
    cleanup.push(() => slapd.stop());
    const tenant = await createTenant(cloud, 'real.test', work);
    const stateDir = join(work, 'real-agent');
    await registerAgent(cloud, tenant.tenantId, stateDir);
    writeFileSync(join(work, 'bind'), slapd.servicePassword, { mode: 0o600 });
    writeFileSync(
      join(stateDir, 'config.json'),
      JSON.stringify({
        directory: {
          kind: 'openldap',
          urls: [slapd.url],
          bindDn: slapd.serviceDn,
          bindPasswordFile: join(work, 'bind'),
          baseDns: [slapd.peopleDn],
        },
        logLevel: 'warn',
      }),
    );
    const agent = startAgent('agent', stateDir);
    children.push(agent);
    await waitFor('the real agent', async () => (await activeAgents(cloud, tenant.tenantId)) === 1, 60_000);
    await sleep(Math.max(heartbeatMs + 2000, 15_000));
    const agentRss = memMb(agent.pid, 'VmRSS');
    const agentHwm = memMb(agent.pid);
    await agent.stop();
    // The same agent as customers get it: the esbuild bundle the admin center serves (no type
    // stripping at start, one module graph).
    const bundle = join(work, AGENT_FILE);
    writeFileSync(bundle, (await agentPackage(pino({ level: 'silent' }))).bytes);
    const bundled = spawnNode('agent-bundle', bundle, ['run', '--state-dir', stateDir]);
    children.push(bundled);
    await waitFor(
      'the bundled agent',
      async () => (await activeAgents(cloud, tenant.tenantId)) === 1,
      60_000,
    );
    await sleep(Math.max(heartbeatMs + 2000, 15_000));
    const bundleRss = memMb(bundled.pid, 'VmRSS');

    const report = {
      scenario: 'idle-agents',
      count,
      procs,
      heartbeat_ms: heartbeatMs,
      connect_s: Math.round(connectS * 10) / 10,
      cloud_rss_before_mb: rss0,
      cloud_rss_mb: rss1,
      cloud_rss_per_conn_kb: Math.round(((rss1 - rss0) * 1024) / count),
      cloud_hwm_mb: hwm,
      heartbeat_cpu_pct: Math.round(((cpu * 100) / (window / 1000)) * 10) / 10,
      heartbeat_cpu_us: Math.round((cpu / heartbeats) * 1e6),
      reconnect_s: Math.round(reconnectS * 10) / 10,
      agent_idle_rss_mb: agentRss,
      agent_idle_hwm_mb: agentHwm,
      agent_bundle_idle_rss_mb: bundleRss,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    for (const c of cleanup) await c().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
};
