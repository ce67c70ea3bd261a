/**
 * Idle memory of one agent as customers run it: the esbuild bundle the admin center serves
 * (apps/cloud/src/admin/agent-package.ts), registered with a real cloud and connected, against a
 * small OpenLDAP, after its first sync and a few heartbeats. Next to it, the floor no agent gets
 * under: bare Node, and Node holding one mutual-TLS WebSocket to the same gateway with `ws`.
 *
 *   node bench/agent-rss.ts [--settle 15] [--node-options '']   (default: the systemd unit's flags)
 *   (table on stderr, JSON on the last line)
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { AGENT_FILE, AGENT_NODE_FLAGS, agentPackage } from '../apps/cloud/src/admin/agent-package.ts';
import { AGENT_CHANNEL_PATH } from '../packages/protocol/src/messages.ts';
import { type Child, spawnNode, waitFor } from '../test/harness/children.ts';
import { startSlapd } from '../test/harness/slapd.ts';
import { cpuModel } from './floor.ts';
import { activeAgents, createTenant, memMb, registerAgent, startCloud } from './stack.ts';

const { values: a } = parseArgs({
  options: { settle: { type: 'string', default: '15' }, 'node-options': { type: 'string' } },
});
// The bundled agent runs with the flags of the systemd unit customers install, unless told otherwise.
const nodeOptions = a['node-options'] ?? AGENT_NODE_FLAGS.join(' ');
const agentEnv = { ...process.env, NODE_OPTIONS: nodeOptions };
const settleMs = Number(a.settle) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const work = mkdtempSync(join(tmpdir(), 'gh-agent-rss-'));
const children: Child[] = [];
const cleanup: (() => Promise<void>)[] = [];

/** VmRSS of a process after it has settled, and its peak (VmHWM). */
const settled = async (c: Child): Promise<{ rss: number; hwm: number }> => {
  await sleep(settleMs);
  if (!c.running()) throw new Error(`${c.name} exited: ${c.output().slice(-1500)}`);
  return { rss: memMb(c.pid, 'VmRSS'), hwm: memMb(c.pid) };
};

// The floor: what Node costs doing nothing, and holding one mutual-TLS WebSocket with `ws`.
const FLOOR_WS = `
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
const [url, stateDir] = process.argv.slice(1);
const f = (n) => readFileSync(stateDir + '/' + n, 'utf8');
const ws = new WebSocket(url, { ca: f('cloud-ca.pem'), key: f('tls.key'), cert: f('tls.crt'), perMessageDeflate: false });
ws.on('error', (e) => console.error(e.message));
setInterval(() => ws.readyState === 1 && ws.ping(), 10_000);
`;

try {
  const cloud = await startCloud(join(work, 'cloud'));
  cleanup.push(() => cloud.stop());
  const slapd = await startSlapd({
    users: Array.from({ length: 20 }, (_, i) => ({
      uid: `u${i}`,
      password: 'x-Passw0rd!',
      mail: `u${i}@rss.test`,
    })),
  });
  cleanup.push(() => slapd.stop());
  const tenant = await createTenant(cloud, 'rss.test', work);
  const stateDir = join(work, 'agent');
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
  const bundle = join(work, AGENT_FILE);
  const pkg = await agentPackage(pino({ level: 'silent' }));
  writeFileSync(bundle, pkg.bytes);

  const bare = spawnNode('bare-node', '-e', ['setInterval(() => {}, 1000)']);
  children.push(bare);
  const { gatewayUrl } = JSON.parse(readFileSync(join(stateDir, 'agent.json'), 'utf8')) as {
    gatewayUrl: string;
  };
  const url = `${gatewayUrl.replace(/^https:/, 'wss:').replace(/\/+$/, '')}${AGENT_CHANNEL_PATH}`;
  // An ES module given with -e resolves `ws` from the working directory (the repository).
  const wsFloor = spawnNode('ws-floor', '--input-type=module', ['-e', FLOOR_WS, url, stateDir]);
  children.push(wsFloor);

  const agent = spawnNode('agent-bundle', bundle, ['run', '--state-dir', stateDir], { env: agentEnv });
  children.push(agent);
  await waitFor('the bundled agent', async () => (await activeAgents(cloud, tenant.tenantId)) === 1, 60_000);
  const [b, w, ag] = await Promise.all([settled(bare), settled(wsFloor), settled(agent)]);
  const report = {
    bundle_bytes: pkg.bytes.length,
    bare_node_rss_mb: b.rss,
    node_ws_tls_rss_mb: w.rss,
    agent_bundle_idle_rss_mb: ag.rss,
    agent_bundle_peak_rss_mb: ag.hwm,
    node: process.version,
    node_options: nodeOptions,
    cpu_model: cpuModel(),
  };
  process.stderr.write(
    `bundle ${Math.round(pkg.bytes.length / 1024)} KiB; idle RSS: bare node ${b.rss} MB, node + ws + TLS ${w.rss} MB, ` +
      `agent bundle ${ag.rss} MB (peak ${ag.hwm} MB)\n`,
  );
  process.stdout.write(`${JSON.stringify(report)}\n`);
} finally {
  await Promise.all(children.map((c) => c.stop()));
  for (const c of cleanup) await c().catch(() => {});
  rmSync(work, { recursive: true, force: true });
}
