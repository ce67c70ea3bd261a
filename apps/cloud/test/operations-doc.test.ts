/**
 * Every shell command in docs/operations.md, run or checked: the ```sh blocks, the `$ ` lines of
 * its transcripts, and the commands quoted in its prose. Each command is matched against CHECKS
 * below, in order; one no entry matches fails the first test, and so does an entry no command
 * matches any more. What can run here runs, with the real CLI, against a real cloud started by
 * this test (root paths moved under a temporary root, host and port the cloud's own). What needs
 * a machine this is not (systemd as PID 1, a container runtime, PostgreSQL's blocks) is checked
 * for every file, flag and path it names, and by the test that runs it elsewhere.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { program as agentProgram } from '../../agent/src/program.ts';
import { program as cloudProgram } from '../src/cli.ts';
import { loadCloudConfig } from '../src/config.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { createClient } from '../src/store/clients.ts';
import { createTenant } from '../src/store/tenants.ts';
import {
  containerfile,
  type DocCommand,
  docCommands,
  dockerAccepts,
  ENGINE_BLOCKS,
  elsewhere,
  envOf,
  exportRows,
  parses,
  ROOT,
  read,
  sh,
  unit,
  words,
} from './operations-doc-commands.ts';

let dir: string;
let sys: string;
let cloud: RunningCloud;
const DATA = () => join(dir, 'data');
let tenantId = '';
let token = '';
const METRICS_TOKEN = 'metrics-token-of-the-doc-test';
/** The doc's root paths, under this test's root; its host and ports, the cloud's. */
const local = (line: string) =>
  line
    .replace(/\bsudo /g, '')
    .replaceAll('/etc/', `${sys}/etc/`)
    .replaceAll('https://localhost:8443', cloud.url)
    .replaceAll('https://127.0.0.1:9464', cloud.metricsUrl!);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-opsdoc-'));
  sys = join(dir, 'root');
  mkdirSync(join(sys, 'etc/gatehouse'), { recursive: true });
  mkdirSync(join(sys, 'etc/systemd/system'), { recursive: true });
  writeFileSync(join(sys, 'etc/gatehouse/metrics-token'), METRICS_TOKEN);
  cloud = await startCloud(
    {
      dataDir: join(dir, 'data'),
      port: 0,
      gatewayPort: 0,
      publicUrl: 'https://localhost:0',
      logLevel: 'silent',
      metricsTokenFile: join(sys, 'etc/gatehouse/metrics-token'),
    },
    { env: {} },
  );
  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'Ops',
    domain: 'ops.example',
    admin: { upn: 'admin@ops.example', password: 'Admin-Passw0rd!' },
  }));
  // A reader service principal: the export's caller, with a token from the tenant's own endpoint.
  const sp = await createClient(cloud.ctx.db, tenantId, {
    name: 'Exporter',
    grantTypes: ['client_credentials'],
    adminRoles: ['reader'],
  });
  const res = await fetchPinned(`${cloud.url}/${tenantId}/v2.0/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${sp.clientId}:${sp.clientSecret}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials',
  });
  token = ((await res.json()) as { access_token: string }).access_token;
  assert.ok(token, 'a token for the export');
  await cloud.ctx.db.insertInto('signins').values(exportRows(tenantId)).execute();
});

after(async () => {
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** fetch that trusts the cloud's generated CA (curl gets the same file through --cacert or CURL_CA_BUNDLE). */
const fetchPinned = (url: string, init: RequestInit) => pinnedFetch(cloud.caCert)(url, init);
const caFile = () => join(DATA(), 'tls/ca.pem');
interface Check {
  name: string;
  match: RegExp;
  /** Only commands of this kind (a transcript runs where a block's line is checked elsewhere). */
  kind?: DocCommand['kind'];
  run(c: DocCommand, t: { skip(msg: string): void }): Promise<void> | void;
}

const CHECKS: Check[] = [
  {
    name: 'the release is unpacked in /opt/gatehouse, npm install bringing Node 24',
    match: /^sudo cp -r \. \/opt\/gatehouse && \(cd \/opt\/gatehouse && sudo npm install\)$/,
    run() {
      const pkg = JSON.parse(read('package.json')) as Record<string, Record<string, string> | undefined>;
      assert.match(
        { ...pkg.dependencies, ...pkg.devDependencies }.node ?? '',
        /^24\./,
        'the root package pins Node 24, which npm install brings',
      );
      const exec = /^ExecStart=(\S+) (\S+)$/m.exec(unit());
      assert.deepEqual(exec?.slice(1), [
        '/opt/gatehouse/node_modules/.bin/node',
        '/opt/gatehouse/apps/cloud/src/main.ts',
      ]);
      assert.ok(
        existsSync(join(ROOT, 'node_modules/.bin/node')) && existsSync(join(ROOT, 'apps/cloud/src/main.ts')),
      );
    },
  },
  {
    name: 'install and cp of the systemd steps, run under a temporary root',
    match: /^sudo (install|cp deploy\/systemd\/)/,
    async run(c) {
      const r = await sh(local(c.line));
      assert.equal(r.code, 0, r.err);
      const env = join(sys, 'etc/gatehouse/cloud.env');
      if (c.line.includes('cloud.env')) {
        assert.equal(statSync(env).mode & 0o777, 0o600);
        assert.match(unit(), /^EnvironmentFile=-?\/etc\/gatehouse\/cloud\.env$/m, 'the unit reads that file');
      } else if (c.line.startsWith('sudo install -d'))
        assert.equal(statSync(join(sys, 'etc/gatehouse')).mode & 0o777, 0o755);
      else
        assert.equal(readFileSync(join(sys, 'etc/systemd/system/gatehouse-cloud.service'), 'utf8'), unit());
    },
  },
  {
    name: 'systemctl enable, offline on the temporary root; the unit itself by packaging.test.ts',
    match: /^sudo systemctl daemon-reload && sudo systemctl enable --now gatehouse-cloud$/,
    async run() {
      mkdirSync(join(sys, 'etc/systemd/system'), { recursive: true });
      writeFileSync(join(sys, 'etc/systemd/system/gatehouse-cloud.service'), unit());
      const r = spawnSync('systemctl', [`--root=${sys}`, 'enable', 'gatehouse-cloud'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      // The link is absolute inside the root, as on a real machine.
      const wants = join(sys, 'etc/systemd/system/multi-user.target.wants/gatehouse-cloud.service');
      assert.equal(readlinkSync(wants), '/etc/systemd/system/gatehouse-cloud.service');
      elsewhere('apps/cloud/test/packaging.test.ts', "spawnSync('systemd-analyze', ['verify'", "'security'");
    },
  },
  {
    name: 'systemd-analyze in the intro: packaging.test.ts runs both',
    match: /^systemd-analyze (verify|security)$/,
    run: (c) =>
      elsewhere('apps/cloud/test/packaging.test.ts', `'systemd-analyze', ['${c.line.split(' ')[1]}'`),
  },
  {
    name: 'docker build: the Containerfile exists, the flags are docker build flags',
    match: /^docker build /,
    run(c, t) {
      const w = words(c.line);
      assert.ok(existsSync(join(ROOT, w[w.indexOf('-f') + 1]!)));
      assert.equal(w.at(-1), '.', 'built from the repository root, where the Containerfile copies from');
      elsewhere('apps/cloud/test/packaging.test.ts', "test('the Containerfile copies what exists");
      if (!dockerAccepts('build', c.line)) t.skip('no docker client here to check the flags');
    },
  },
  {
    name: "docker run: the ports, volume and setting are the image's",
    match: /^docker run /,
    run(c, t) {
      const w = words(c.line);
      const after = (f: string) => w.flatMap((x, i) => (x === f ? [w[i + 1]!] : []));
      const exposed = /^EXPOSE (.+)$/m.exec(containerfile())![1]!.split(' ');
      for (const p of after('-p')) assert.ok(exposed.includes(p.split(':')[1]!), `${p} is exposed`);
      assert.deepEqual(
        after('-v').map((v) => v.split(':')[1]),
        JSON.parse(/^VOLUME (.+)$/m.exec(containerfile())![1]!),
      );
      const env = Object.fromEntries(after('-e').map((e) => e.split(/=(.*)/s).slice(0, 2)));
      const config = loadCloudConfig({ ...env, GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'run') });
      assert.equal(config.publicUrl, env.GATEHOUSE_CLOUD_PUBLIC_URL);
      assert.equal(w.at(-1), 'gatehouse-cloud', 'the image the build tagged');
      if (!dockerAccepts('run', c.line)) t.skip('no docker client here to check the flags');
    },
  },
  {
    name: "docker exec: the same command line, from the image's WORKDIR, on a real data directory",
    match: /^docker exec gatehouse node apps\/cloud\/src\/cli\.ts /,
    async run(c) {
      assert.match(containerfile(), /^WORKDIR \/opt\/gatehouse$/m);
      assert.match(containerfile(), /GATEHOUSE_CLOUD_DATA_DIR=\/var\/lib\/gatehouse/);
      const inside = words(c.line)
        .slice(3)
        .join(' ')
        .replace(/^node /, `"${process.execPath}" `);
      const r = await sh(inside, { env: { GATEHOUSE_CLOUD_DATA_DIR: DATA() } });
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(tenantId));
    },
  },
  {
    name: 'the compose files are made in a copy of deploy/container; compose uses them, git ignores them',
    match: /^(cp deploy\/container\/cloud\.env\.example |printf .* > deploy\/container\/)/,
    async run(c) {
      const copy = join(dir, 'compose');
      cpSync(join(ROOT, 'deploy/container'), join(copy, 'deploy/container'), { recursive: true });
      const r = await sh(c.line, { cwd: copy });
      assert.equal(r.code, 0, r.err);
      const made = words(c.line.replace(/^printf .* > /, '> ')).at(-1)!;
      const name = made.split('/').at(-1)!;
      assert.ok(statSync(join(copy, made)).size > 0);
      if (name === 'postgres_password.txt')
        assert.ok(!readFileSync(join(copy, made), 'utf8').endsWith('\n'), 'no newline in the password');
      assert.ok(read('deploy/container/compose.yaml').includes(name), `compose.yaml uses ${name}`);
      assert.ok(read('.gitignore').split('\n').includes(made), `.gitignore lists ${made}`);
    },
  },
  {
    name: 'docker compose up: the compose file, checked by packaging.test.ts',
    match: /^docker compose -f deploy\/container\/compose\.yaml up --build$/,
    run() {
      assert.ok(existsSync(join(ROOT, 'deploy/container/compose.yaml')));
      elsewhere(
        'apps/cloud/test/packaging.test.ts',
        "test('the compose file: two cloud nodes built from the Containerfile",
      );
    },
  },
  {
    name: "curl: the probes and the metrics, against this test's cloud",
    match: /^curl -fsS --cacert "\$GATEHOUSE_CLOUD_DATA_DIR\/tls\/ca\.pem" /,
    async run(c) {
      const env = { GATEHOUSE_CLOUD_DATA_DIR: DATA() };
      const r = await sh(local(c.line), { env });
      assert.equal(r.code, 0, r.err);
      if (c.line.includes('/metrics')) {
        assert.match(r.out, /^# TYPE gatehouse_ready gauge$/m);
        const without = await sh(local(c.line.replace(/-H "[^"]*" /, '')), { env });
        assert.equal(without.code, 22, 'refused without the token (curl -f on a 401)');
      } else assert.match(r.out, /"status":"ok"/);
    },
  },
  {
    name: "curl: the sign-in log export, against this test's cloud",
    match:
      /^curl -fsS -H "authorization: Bearer \$TOKEN" "\$PUBLIC_URL\/\$TENANT\/api\/v1\/signins\/export\//,
    async run(c) {
      const cwd = mkdtempSync(join(dir, 'export-'));
      const env = { TOKEN: token, PUBLIC_URL: cloud.url, TENANT: tenantId, CURL_CA_BUNDLE: caFile() };
      const r = await sh(c.line, { cwd, env });
      assert.equal(r.code, 0, r.err);
      const file = words(c.line).at(-1)!;
      const text = readFileSync(join(cwd, file), 'utf8');
      if (file.endsWith('.csv')) {
        const [head, ...rows] = text.trim().split(/\r?\n/);
        assert.match(head!, /^id,at,/);
        assert.equal(rows.length, 2);
        assert.match(text, /,2026-01-01T00:00:01\.000Z,[^\n]*alice@ops\.example/, '`at` as an ISO time');
        assert.doesNotMatch(text, /before@ops\.example/, 'from= leaves the older row out');
      } else {
        const rows = text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { upn: string });
        assert.deepEqual(
          rows.map((x) => x.upn),
          ['bob@ops.example'],
          'result=failure',
        );
      }
    },
  },
  {
    name: "the SQLite backup and restore blocks, exactly as written, on this test's cloud",
    match: /^gatehouse (backup --out "\$BACKUP"|restore --from "\$BACKUP" --data-dir "\$NEW_DATA_DIR")$/,
    async run(c) {
      const BACKUP = join(dir, 'backup');
      const data = DATA();
      if (c.line.startsWith('gatehouse restore') && !existsSync(BACKUP))
        assert.equal(
          (await sh('gatehouse backup --out "$BACKUP"', { env: { BACKUP, GATEHOUSE_CLOUD_DATA_DIR: data } }))
            .code,
          0,
        );
      const NEW_DATA_DIR = join(dir, 'restored');
      const r = await sh(c.line, {
        env: { BACKUP, NEW_DATA_DIR, GATEHOUSE_CLOUD_DATA_DIR: data, GATEHOUSE_CLOUD_LOG_LEVEL: 'silent' },
      });
      assert.equal(r.code, 0, r.err);
      assert.ok(
        existsSync(join(c.line.startsWith('gatehouse backup') ? BACKUP : NEW_DATA_DIR, 'gatehouse.db')),
      );
      elsewhere('test/e2e-backup.test.ts', ...ENGINE_BLOCKS, "'sqlite'");
    },
  },
  {
    name: 'the PostgreSQL backup and restore blocks: run as written by test/e2e-backup.test.ts',
    kind: 'sh',
    match: /^(umask 077 && mkdir -p|pg_dump |pg_restore |cp -p |cp -Rp |gatehouse tenant list$)/,
    run(c) {
      assert.ok(
        c.block === 'postgres-backup' || c.block === 'postgres-restore',
        `${c.line} is in a marked block`,
      );
      elsewhere('test/e2e-backup.test.ts', ...ENGINE_BLOCKS, "'postgres'", 'docBlock(name)');
    },
  },
  {
    name: "a transcript: the real CLI prints what the doc shows (its home directory the test's own)",
    kind: 'transcript',
    match: /^gatehouse /,
    async run(c) {
      const home = mkdtempSync(join(dir, 'op-'));
      const r = await sh(c.line, { cwd: home, env: { HOME: home } });
      const shown = (c.output ?? []).map((l) => l.replaceAll('/home/op', home));
      assert.ok(shown.length > 0);
      assert.deepEqual(r.err.split('\n').slice(0, shown.length), shown, r.err);
      assert.equal(r.code, /validation_failed/.test(shown[0]!) ? 2 : 1);
    },
  },
  {
    name: 'the settings rename: sed on an env file of old names, which the cloud then accepts',
    kind: 'inline',
    match: /^sed -i 's\/\^GATEHOUSE_\/GATEHOUSE_CLOUD_\/' \/etc\/gatehouse\/cloud\.env$/,
    async run(c) {
      const file = join(sys, 'etc/gatehouse/cloud.env');
      const data = join(dir, 'renamed');
      writeFileSync(file, `GATEHOUSE_PORT=18443\nGATEHOUSE_DATA_DIR=${data}\nGATEHOUSE_LOG_LEVEL=warn\n`);
      assert.throws(
        () => loadCloudConfig(envOf(readFileSync(file, 'utf8'))),
        (e: { code?: string; detail?: unknown }) =>
          e.code === 'config_invalid' && JSON.stringify(e.detail).includes('GATEHOUSE_CLOUD_PORT'),
      );
      const r = await sh(local(c.line));
      assert.equal(r.code, 0, r.err);
      const config = loadCloudConfig(envOf(readFileSync(file, 'utf8')));
      assert.deepEqual([config.port, config.dataDir, config.logLevel], [18443, data, 'warn']);
    },
  },
  {
    name: "openssl: the expiry of the service certificate this test's cloud made",
    kind: 'inline',
    match: /^openssl x509 -enddate -noout -in CERT$/,
    async run(c) {
      const cert = join(DATA(), 'tls/server.pem');
      const r = await sh(c.line.replace('CERT', `"${cert}"`));
      assert.equal(r.code, 0, r.err);
      const notAfter = new X509Certificate(readFileSync(cert)).validTo;
      assert.equal(r.out.trim(), `notAfter=${notAfter}`);
    },
  },
  {
    name: 'a gatehouse command named in the prose: the CLI has it and takes its flags',
    kind: 'inline',
    match: /^gatehouse /,
    run: (c) => parses(cloudProgram, c.line),
  },
  {
    name: 'a gatehouse-agent command named in the prose: the agent has it and takes its flags',
    kind: 'inline',
    match: /^gatehouse-agent /,
    run: (c) => parses(agentProgram, c.line),
  },
  {
    name: 'the retention benchmark exists where the doc says',
    kind: 'inline',
    match: /^npx node bench\/\S+\.ts$/,
    run: (c) => assert.ok(existsSync(join(ROOT, words(c.line)[2]!))),
  },
];

const COMMANDS = docCommands();
const checkOf = (c: DocCommand) => CHECKS.find((k) => (!k.kind || k.kind === c.kind) && k.match.test(c.line));

test('every command of docs/operations.md has a check, and every check a command', () => {
  assert.ok(COMMANDS.filter((c) => c.kind === 'sh').length >= 20, 'the sh blocks were read');
  assert.ok(COMMANDS.some((c) => c.kind === 'transcript') && COMMANDS.some((c) => c.kind === 'inline'));
  assert.deepEqual(
    COMMANDS.filter((c) => !checkOf(c)).map((c) => `${c.kind}: ${c.line}`),
    [],
    'commands no check runs: add one to CHECKS',
  );
  const used = new Set(COMMANDS.map(checkOf));
  assert.deepEqual(
    CHECKS.filter((k) => !used.has(k)).map((k) => k.name),
    [],
    'checks no command of the doc needs any more',
  );
});

for (const c of COMMANDS)
  test(`${c.kind}: ${c.line}`, async (t) => {
    const k = checkOf(c);
    assert.ok(k, 'no check (see the first test)');
    await k.run(c, t);
  });
