/**
 * The deployment files in deploy/: images cannot be built on the test machines, so this checks what
 * can be checked without a container runtime. The systemd unit passes `systemd-analyze verify` and
 * stays hardened; the Containerfile and the compose file copy and run paths that exist, as a
 * non-root user, on the ports the cloud listens on; every GATEHOUSE_CLOUD_* setting they name is one the
 * cloud's configuration schema accepts.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { GatehouseError } from '@gatehouse/protocol';
import { parse as parseYaml } from 'yaml';
import { CloudConfigSchema, DEFAULT_METRICS_PORT, loadCloudConfig } from '../src/config.ts';
import { startCloud } from '../src/server.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const deploy = (...p: string[]) => join(root, 'deploy', ...p);
const INSTALL_DIR = '/opt/gatehouse';

/** GATEHOUSE_CLOUD_* assignments in env-file syntax (commented-out examples included). */
const envAssignments = (text: string): Record<string, string> =>
  Object.fromEntries(
    [...text.matchAll(/^#?\s*(GATEHOUSE_CLOUD_[A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!.trim()]),
  );

/** Loads the settings as the cloud would, with files the test cannot have replaced by readable ones. */
const acceptedByCloud = (env: Record<string, string>) => {
  const readable = join(root, 'package.json');
  const filled = Object.fromEntries(
    Object.entries(env).map(([k, v]) => {
      if (k.endsWith('_FILE')) return [k, readable];
      if (k === 'GATEHOUSE_CLOUD_SECRET_KEY') return [k, v || randomBytes(32).toString('base64')];
      return [k, v];
    }),
  );
  return loadCloudConfig({ ...filled, GATEHOUSE_CLOUD_DATA_DIR: tmpdir() });
};

test('the systemd unit verifies and stays hardened (exposure at most 2.0 of 10)', (t) => {
  const unit = readFileSync(deploy('systemd', 'gatehouse-cloud.service'), 'utf8');
  // verify checks that ExecStart's program exists: point the install directory at this checkout.
  const dir = mkdtempSync(join(tmpdir(), 'gh-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'gatehouse-cloud.service');
  writeFileSync(file, unit.replaceAll(INSTALL_DIR, root));
  const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  assert.equal(verify.status, 0, verify.stderr);
  assert.equal(verify.stderr.trim(), '', 'systemd-analyze verify has no warnings');
  const security = spawnSync('systemd-analyze', ['security', '--offline=true', '--threshold=20', file], {
    encoding: 'utf8',
  });
  assert.equal(security.status, 0, security.stdout.split('\n').slice(-3).join('\n'));

  const exec = /^ExecStart=(\S+) (\S+)$/m.exec(unit);
  assert.ok(exec, 'ExecStart runs node on one script');
  for (const p of [exec[1]!, exec[2]!]) assert.ok(existsSync(p.replace(INSTALL_DIR, root)), `${p} exists`);
  assert.match(unit, /^DynamicUser=yes$/m);
  assert.match(unit, /^UMask=0077$/m);
  const env = Object.fromEntries(
    [...unit.matchAll(/^Environment=(GATEHOUSE_CLOUD_[A-Z_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]),
  );
  assert.equal(env.GATEHOUSE_CLOUD_DATA_DIR, '/var/lib/gatehouse', 'state lives in StateDirectory=gatehouse');
  assert.doesNotThrow(() => acceptedByCloud(env));
});

test('every GATEHOUSE_CLOUD_* setting the deployment files name is accepted; an unknown one is not', () => {
  const example = envAssignments(readFileSync(deploy('container', 'cloud.env.example'), 'utf8'));
  assert.ok(Object.keys(example).length >= 5, 'the example names the scale-out settings');
  const config = acceptedByCloud(example);
  assert.match(config.database, /^postgres:\/\//);
  assert.ok(config.natsUrl, 'the scale-out shape names NATS');
  // The check above can fail: the schema is strict about names.
  assert.throws(() => acceptedByCloud({ ...example, GATEHOUSE_CLOUD_NOT_A_SETTING: '1' }), {
    code: 'config_invalid',
  });
  // The agent's settings in the same shell (one host running both, a shared env file) are not the
  // cloud's business: distinct prefixes, so neither app refuses the other's names.
  const shared = { ...example, GATEHOUSE_AGENT_DIRECTORY__URLS: 'ldaps://dc1', GATEHOUSE_AGENT_CONFIG: '/x' };
  assert.equal(acceptedByCloud(shared).natsUrl, config.natsUrl);
  // A setting under its first release's name is refused with the name it has now, not ignored.
  assert.throws(
    () => loadCloudConfig({ GATEHOUSE_PORT: '8443' }),
    (e: GatehouseError) => {
      assert.equal(e.code, 'config_invalid');
      assert.match(JSON.stringify(e.detail), /GATEHOUSE_CLOUD_PORT/);
      return true;
    },
  );
});

test('the Containerfile copies what exists and runs the cloud as a non-root user', () => {
  const text = readFileSync(deploy('container', 'Containerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#'));
  const stages = lines.filter((l) => /^FROM /.test(l));
  assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
  for (const l of lines.filter((l) => /^COPY /.test(l) && !l.includes('--from'))) {
    const parts = l.split(/\s+/).slice(1, -1);
    for (const src of parts) assert.ok(existsSync(join(root, src)), `COPY source ${src} exists`);
  }
  const runtime = lines.slice(lines.lastIndexOf(stages.at(-1)!));
  const user = runtime.find((l) => /^USER /.test(l))?.split(/\s+/)[1] ?? 'root';
  assert.ok(!/^(root|0)(:|$)/.test(user), `runs as ${user}`);
  const entry = runtime.find((l) => /^ENTRYPOINT /.test(l));
  assert.ok(entry);
  const argv = JSON.parse(entry.slice('ENTRYPOINT '.length)) as string[];
  assert.equal(argv[0], 'node');
  assert.ok(existsSync(join(root, argv[1]!)), `${argv[1]} exists`);
  const exposed = runtime
    .filter((l) => /^EXPOSE /.test(l))
    .flatMap((l) => l.split(/\s+/).slice(1))
    .map(Number);
  const defaults = CloudConfigSchema.parse({});
  assert.deepEqual(exposed.sort(), [defaults.port, defaults.gatewayPort, DEFAULT_METRICS_PORT].sort());
  const health = runtime.find((l) => /^HEALTHCHECK /.test(l));
  assert.ok(health, 'a health check');
  const check = JSON.parse(health.slice(health.indexOf('CMD ') + 4)) as string[];
  assert.equal(check[0], 'node');
  assert.ok(existsSync(join(root, check[1]!)), `${check[1]} exists`);
  const env = Object.fromEntries(
    [...(runtime.find((l) => /^ENV /.test(l)) ?? '').matchAll(/(GATEHOUSE_CLOUD_[A-Z_]+)=(\S+)/g)].map(
      (m) => [m[1]!, m[2]!],
    ),
  );
  assert.doesNotThrow(() => acceptedByCloud(env));
  // The esbuild version the image installs is read from the cloud's package.json at build time.
  const version = execFileSync(
    process.execPath,
    ['-p', "require('./apps/cloud/package.json').devDependencies.esbuild"],
    { cwd: root, encoding: 'utf8' },
  ).trim();
  assert.match(version, /^\^?\d+\.\d+\.\d+$/);
});

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  env_file?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  depends_on?: Record<string, unknown>;
}

test('the compose file: two cloud nodes built from the Containerfile, on the PostgreSQL and NATS it defines', () => {
  const dir = deploy('container');
  const compose = parseYaml(readFileSync(join(dir, 'compose.yaml'), 'utf8')) as {
    services: Record<string, ComposeService>;
    secrets?: Record<string, { file: string }>;
  };
  const { services } = compose;
  const nodes = Object.entries(services).filter(([, s]) => s.build);
  assert.equal(nodes.length, 2);
  const example = envAssignments(readFileSync(join(dir, 'cloud.env.example'), 'utf8'));
  const defaults = CloudConfigSchema.parse({});
  for (const [name, s] of nodes) {
    assert.ok(
      existsSync(join(dir, s.build!.context, s.build!.dockerfile)),
      `${name} builds a file that exists`,
    );
    assert.deepEqual(s.env_file, ['cloud.env'], 'made from cloud.env.example');
    assert.doesNotThrow(() => acceptedByCloud({ ...example, ...s.environment }));
    const inside = (s.ports ?? []).map((p) => Number(p.split(':').at(-1)));
    assert.deepEqual(
      inside.sort(),
      [defaults.port, defaults.gatewayPort].sort(),
      `${name} publishes both ports`,
    );
    for (const dep of Object.keys(s.depends_on ?? {})) assert.ok(services[dep], `${name} depends on ${dep}`);
  }
  // The example's database and NATS addresses name services of this file.
  assert.ok(services[new URL(example.GATEHOUSE_CLOUD_DATABASE!).hostname]?.image?.startsWith('postgres:'));
  assert.ok(services[new URL(example.GATEHOUSE_CLOUD_NATS_URL!).hostname]?.image?.startsWith('nats:'));
  for (const [, s] of Object.entries(compose.secrets ?? {}))
    assert.ok(readFileSync(join(root, '.gitignore'), 'utf8').includes(`deploy/container/${s.file}`));
});

test('the container health check answers 0 for a ready cloud and 1 when nothing answers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-readyz-'));
  const cloud = await startCloud(
    { dataDir: dir, port: 0, gatewayPort: 0, metricsPort: 0, logLevel: 'silent' },
    { env: {} },
  );
  t.after(async () => {
    await cloud.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  // Asynchronously: the cloud answering the check runs in this process's event loop.
  const run = (metricsPort: number) =>
    new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [deploy('container', 'readyz.mjs')], {
        env: { GATEHOUSE_CLOUD_DATA_DIR: dir, GATEHOUSE_CLOUD_METRICS_PORT: String(metricsPort) },
        stdio: 'ignore',
      });
      child.once('exit', (code) => resolve(code));
    });
  assert.equal(await run(Number(new URL(cloud.metricsUrl!).port)), 0);
  assert.equal(await run(1), 1, 'nothing listens on port 1');
});
