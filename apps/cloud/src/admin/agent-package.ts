/**
 * The agent as one file a Linux server can run with Node (22 or later): apps/agent bundled with
 * the protocol package and its production dependencies by esbuild, built once per process on
 * first download. esbuild is a devDependency of the cloud; an install without it answers
 * internal_error for the download and says why in the log.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { GatehouseError } from '@gatehouse/protocol';
import type { Logger } from 'pino';

const AGENT_DIR = join(import.meta.dirname, '..', '..', '..', 'agent');
export const AGENT_FILE = 'gatehouse-agent.mjs';
/**
 * Node flags the service runs the agent with. A young generation capped at 1 MiB per semi-space
 * (default up to 16): after a sync the default one stays grown, and idle RSS varied by ~5 MB
 * between runs (77-82 MB); capped it is ~75 MB. The scavenges it adds are cheap, since little of a
 * sign-in's garbage survives one (bench/agent-rss.ts, docs/benchmarks.md). `gc` exposed: a sync run
 * collects as it reads instead of letting the heap grow to four times its data (agent heap.ts).
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--expose-gc'];

export interface AgentPackage {
  file: string;
  version: string;
  bytes: Uint8Array;
  sha256: string;
}

let built: Promise<AgentPackage> | undefined;

/**
 * zod re-exports every message locale (~40 languages, a third of the bundle), all evaluated at
 * start; the agent only ever speaks zod's default English. This serves zod's locales index as
 * English alone, so `config(en())` works and the rest never loads.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b: import('esbuild').PluginBuild) {
    b.onResolve({ filter: /\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]/.test(args.importer)
        ? { path: join(args.resolveDir, dirname(args.path), 'en.js'), namespace: 'zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)};`,
      loader: 'js',
      resolveDir: dirname(args.path),
    }));
  },
};

const build = async (): Promise<AgentPackage> => {
  const version = String(
    (JSON.parse(readFileSync(join(AGENT_DIR, 'package.json'), 'utf8')) as { version?: string }).version,
  );
  const esbuild = await import('esbuild');
  const r = await esbuild.build({
    entryPoints: [join(AGENT_DIR, 'src', 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    write: false,
    // ws loads these optional native speed-ups inside try/catch; the agent runs without them.
    external: ['bufferutil', 'utf-8-validate'],
    // Whitespace and syntax only: names stay, so stack traces in a customer's log still read.
    // Together with the zod locales below, ~4 MB less idle RSS (bench/agent-rss.ts).
    minifyWhitespace: true,
    minifySyntax: true,
    keepNames: true,
    plugins: [zodEnglishOnly],
    // CommonJS dependencies call require() for Node built-ins; an ES module has none of its own.
    banner: {
      js: `// Gatehouse agent ${version}\nimport { createRequire as __ghRequire } from 'node:module'; const require = __ghRequire(import.meta.url);`,
    },
    logLevel: 'silent',
  });
  const bytes = r.outputFiles[0]!.contents;
  return { file: AGENT_FILE, version, bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
};

export const agentPackage = (log: Logger): Promise<AgentPackage> => {
  built ??= build().catch((err: unknown) => {
    built = undefined;
    log.error({ err }, 'building the agent package failed (is esbuild installed?)');
    throw new GatehouseError('internal_error', undefined, { cause: err });
  });
  return built;
};

/** SHA-256 fingerprint of a PEM certificate, as `openssl x509 -fingerprint -sha256` prints it. */
export const certFingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

/**
 * The exact commands to install the agent as a systemd service and register it with a one-time
 * token. Shell-safe: every value interpolated is a URL, a token or PEM text, placed in quotes or a
 * quoted here-document.
 */
export const installCommands = (o: {
  publicUrl: string;
  tenantId: string;
  token: string;
  caPem: string;
}): { ca: string; register: string; configure: string; service: string; unit: string; all: string } => {
  const stateDir = '/var/lib/gatehouse-agent';
  const ca = [
    `sudo install -d -m 0755 /opt/gatehouse-agent /etc/gatehouse-agent`,
    `sudo install -m 0644 ${AGENT_FILE} /opt/gatehouse-agent/${AGENT_FILE}`,
    `sudo useradd --system --home-dir ${stateDir} --shell /usr/sbin/nologin gatehouse-agent || true`,
    `sudo install -d -o gatehouse-agent -g gatehouse-agent -m 0700 ${stateDir}`,
    `sudo tee /etc/gatehouse-agent/cloud-ca.pem > /dev/null <<'EOF'\n${o.caPem.trim()}\nEOF`,
    `openssl x509 -in /etc/gatehouse-agent/cloud-ca.pem -noout -fingerprint -sha256   # must print ${certFingerprint(o.caPem)}`,
  ].join('\n');
  const register = `sudo -u gatehouse-agent node /opt/gatehouse-agent/${AGENT_FILE} register --cloud '${o.publicUrl}' --ca-file /etc/gatehouse-agent/cloud-ca.pem --token '${o.token}' --state-dir ${stateDir}`;
  const configure = [
    `# Describe your directory (see docs/agent.md); the bind password goes in a file only the agent reads.`,
    `sudo -u gatehouse-agent tee ${stateDir}/config.json > /dev/null <<'EOF'`,
    `{ "directory": { "kind": "ad", "urls": ["ldaps://dc1.example.com"], "bindDn": "svc-gatehouse@example.com",`,
    `  "bindPasswordFile": "${stateDir}/bind-password", "baseDns": ["DC=example,DC=com"] } }`,
    `EOF`,
  ].join('\n');
  const unit = [
    '[Unit]',
    'Description=Gatehouse pass-through authentication agent',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'User=gatehouse-agent',
    `ExecStart=/usr/bin/env node ${AGENT_NODE_FLAGS.join(' ')} /opt/gatehouse-agent/${AGENT_FILE} run --state-dir ${stateDir}`,
    'Restart=always',
    'RestartSec=5',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    `ReadWritePaths=${stateDir}`,
    'ProtectHome=yes',
    'PrivateTmp=yes',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ].join('\n');
  const service = [
    `sudo tee /etc/systemd/system/gatehouse-agent.service > /dev/null <<'EOF'\n${unit}\nEOF`,
    'sudo systemctl daemon-reload',
    'sudo systemctl enable --now gatehouse-agent',
    'systemctl status gatehouse-agent',
  ].join('\n');
  return { ca, register, configure, service, unit, all: [ca, register, configure, service].join('\n\n') };
};
