/**
 * The scale-out shape as child processes: cloud nodes (apps/cloud/src/main.ts) sharing one
 * PostgreSQL database and one NATS server, and agents registered with one-time tokens. Used by
 * test/e2e-scale-out.test.ts; each process is a real `node` a customer would run.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'nats';
import { AGENT_NODE_FLAGS } from '../../apps/cloud/src/admin/agent-package.ts';
import { type Child, freePort, ROOT, registerAgentCli, runNode, spawnNode, waitFor } from './children.ts';

export const NATS_URL = process.env.GATEHOUSE_TEST_NATS ?? 'nats://127.0.0.1:4222';

/** True when NATS answers; false outside CI when it does not; throws under CI. */
export const natsAvailable = async (): Promise<boolean> => {
  try {
    const nc = await connect({ servers: NATS_URL, timeout: 2000, maxReconnectAttempts: 0 });
    await nc.close();
    return true;
  } catch (err) {
    if (process.env.CI === 'true') throw new Error(`NATS is required under CI: ${String(err)}`);
    return false;
  }
};

export interface ClusterSettings {
  dir: string;
  databaseUrl: string;
  /** Extra GATEHOUSE_CLOUD_* settings for every node. */
  extra?: Record<string, string>;
}

export interface CloudNode {
  id: string;
  url: string;
  gatewayUrl: string;
  /** The node's metrics listener (/metrics, /livez, /readyz). */
  metricsUrl: string;
  child: Child;
  env: NodeJS.ProcessEnv;
  /** Every process this node has been (restarts append). */
  outputs: string[];
}

/** This process's environment without GATEHOUSE_CLOUD_* settings (the test's own would leak in). */
const baseEnv = () =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_CLOUD_')));

export const clusterEnv = (s: ClusterSettings, secretKey: string): NodeJS.ProcessEnv => ({
  ...baseEnv(),
  GATEHOUSE_CLOUD_DATABASE: s.databaseUrl,
  GATEHOUSE_CLOUD_NATS_URL: NATS_URL,
  GATEHOUSE_CLOUD_DATA_DIR: join(s.dir, 'cloud'),
  GATEHOUSE_CLOUD_SECRET_KEY: secretKey,
  ...s.extra,
});

export const newSecretKey = () => randomBytes(32).toString('base64');

/** Starts (or restarts, given the node) a cloud node and waits until it listens. */
export const startNode = async (
  s: ClusterSettings,
  secretKey: string,
  id: string,
  again?: CloudNode,
): Promise<CloudNode> => {
  let env = again?.env;
  if (!env) {
    const port = await freePort();
    const gatewayPort = await freePort();
    const metricsPort = await freePort();
    env = {
      ...clusterEnv(s, secretKey),
      GATEHOUSE_CLOUD_NODE_ID: id,
      GATEHOUSE_CLOUD_PORT: String(port),
      GATEHOUSE_CLOUD_GATEWAY_PORT: String(gatewayPort),
      GATEHOUSE_CLOUD_METRICS_PORT: String(metricsPort),
      GATEHOUSE_CLOUD_PUBLIC_URL: `https://127.0.0.1:${port}`,
    };
  }
  const child = spawnNode(id, join(ROOT, 'apps/cloud/src/main.ts'), [], { env });
  await waitFor(`cloud node ${id}`, () => {
    if (!child.running()) throw new Error(`${id} exited:\n${child.output()}`);
    return child.output().includes('Agent gateway on');
  });
  const node: CloudNode = {
    id,
    url: String(env.GATEHOUSE_CLOUD_PUBLIC_URL),
    gatewayUrl: `wss://127.0.0.1:${env.GATEHOUSE_CLOUD_GATEWAY_PORT}`,
    metricsUrl: `https://127.0.0.1:${env.GATEHOUSE_CLOUD_METRICS_PORT}`,
    child,
    env,
    outputs: again?.outputs ?? [],
  };
  node.outputs.push('');
  const i = node.outputs.length - 1;
  const keep = setInterval(() => {
    node.outputs[i] = child.output();
  }, 200);
  void child.exited.then(() => {
    clearInterval(keep);
    node.outputs[i] = child.output();
  });
  return node;
};

/** The operator CLI on the shared database. */
export const cli = async (env: NodeJS.ProcessEnv, ...args: string[]): Promise<Record<string, unknown>> => {
  const r = await runNode(join(ROOT, 'apps/cloud/src/cli.ts'), [...args, '--json'], { env });
  if (r.code !== 0) throw new Error(`gatehouse ${args.join(' ')} failed (${r.code}): ${r.stdout}${r.stderr}`);
  return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
};

export interface AgentProc {
  name: string;
  stateDir: string;
  child: Child;
  outputs: string[];
}

export const registerAgentProc = async (
  name: string,
  stateDir: string,
  node: CloudNode,
  token: string,
  config: Record<string, unknown>,
) => {
  mkdirSync(stateDir, { recursive: true });
  const r = await registerAgentCli(
    {
      cloudUrl: node.url,
      caFile: join(String(node.env.GATEHOUSE_CLOUD_DATA_DIR), 'tls', 'ca.pem'),
      token,
      stateDir,
    },
    { env: baseEnv() },
  );
  if (r.code !== 0) throw new Error(`agent ${name} register: ${r.stdout}${r.stderr}`);
  writeFileSync(join(stateDir, 'config.json'), JSON.stringify(config));
  return r;
};

export const runAgentProc = (name: string, stateDir: string, prev?: AgentProc): AgentProc => {
  const child = spawnNode(name, join(ROOT, 'apps/agent/src/main.ts'), ['run', '--state-dir', stateDir], {
    env: baseEnv(),
    // As the service runs it (the systemd unit's flags).
    nodeArgs: AGENT_NODE_FLAGS,
  });
  const outputs = prev?.outputs ?? [];
  outputs.push('');
  const i = outputs.length - 1;
  const keep = setInterval(() => {
    outputs[i] = child.output();
  }, 200);
  void child.exited.then(() => {
    clearInterval(keep);
    outputs[i] = child.output();
  });
  return { name, stateDir, child, outputs };
};

/** kill -9 of the process group. */
export const kill9 = async (c: Child) => {
  try {
    process.kill(-c.pid, 'SIGKILL');
  } catch {}
  await c.exited;
};
