/**
 * Only first-time setup creates state, and the secret key is checked against the database's
 * sealed check value by every CLI command and at the cloud's start, before anything is written:
 * the real CLI and the real cloud entry point (main.ts) as child processes, on SQLite and on a
 * real PostgreSQL database.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { runNode } from '../../../test/harness/children.ts';
import { NATS_URL } from '../../../test/harness/cluster.ts';
import { createTempDatabase, type TempDatabase } from '../../../test/harness/postgres.ts';
import { startCloud } from '../src/server.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'apps/cloud/src/cli.ts');
const MAIN = join(ROOT, 'apps/cloud/src/main.ts');
const newKey = () => randomBytes(32).toString('base64');
let dir: string;

/** PATH only: the test's own GATEHOUSE_CLOUD_* settings must not leak in. */
const baseEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
  ...extra,
});

// biome-ignore lint/suspicious/noExplicitAny: CLI output is checked field by field below.
type Json = any;
const gh = async (
  env: NodeJS.ProcessEnv,
  args: string[],
  cwd = ROOT,
): Promise<{ code: number; out: Json; stderr: string }> => {
  const r = await runNode(CLI, [...args, '--json'], { env, cwd });
  return { code: r.code, out: r.stdout.trim() ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
};

const tenantCreate = (env: NodeJS.ProcessEnv, domain: string, cwd?: string) =>
  gh(
    env,
    [
      'tenant',
      'create',
      '--name',
      domain,
      '--domain',
      domain,
      '--admin-upn',
      `admin@${domain}`,
      '--admin-password-file',
      join(dir, 'pw'),
    ],
    cwd,
  );

/** Every command an operator would reach for, all refused the same way. */
const refusedEverywhere = async (env: NodeJS.ProcessEnv, tenantId: string, cwd?: string) => {
  const runs = [
    await gh(env, ['tenant', 'list'], cwd),
    await gh(env, ['token', 'create', '--tenant', tenantId], cwd),
    await gh(
      env,
      ['client', 'create', '--tenant', tenantId, '--name', 'x', '--redirect-uri', 'https://x.example/cb'],
      cwd,
    ),
    await tenantCreate(env, 'wrong.example', cwd),
  ];
  for (const r of runs) {
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.out.error, 'config_invalid', r.stderr);
  }
  return runs.map((r) => r.out.detail[0] as { path: string; message: string });
};

/** The cloud's own entry point, expected to refuse: exit 1 with config_invalid, quickly. */
const cloudRefuses = async (env: NodeJS.ProcessEnv): Promise<string> => {
  const r = await runNode(MAIN, [], {
    env: { ...env, GATEHOUSE_CLOUD_PORT: '0', GATEHOUSE_CLOUD_GATEWAY_PORT: '0' },
  });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /The configuration is not valid/);
  return r.stderr;
};

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-keycheck-'));
  writeFileSync(join(dir, 'pw'), 'Admin-pass-1234!', { mode: 0o600 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('the CLI in an empty directory refuses, names where it looked, and writes nothing', async () => {
  const empty = join(dir, 'empty');
  mkdirSync(empty);
  // No GATEHOUSE_CLOUD_DATA_DIR: the default, .data/cloud under the working directory.
  const details = await refusedEverywhere(baseEnv({}), '00000000-0000-4000-8000-000000000000', empty);
  for (const d of details) {
    assert.equal(d.path, 'dataDir');
    assert.ok(d.message.includes(join(empty, '.data/cloud/gatehouse.db')), d.message);
    assert.match(d.message, /gatehouse init/);
  }
  assert.deepEqual(readdirSync(empty), [], 'nothing was created');

  // A data directory named but wrong is not created either.
  const wrong = join(dir, 'no-such-dir');
  const [d] = await refusedEverywhere(
    baseEnv({ GATEHOUSE_CLOUD_DATA_DIR: wrong }),
    '00000000-0000-4000-8000-000000000000',
  );
  assert.ok(d!.message.includes(wrong), d!.message);
  assert.equal(existsSync(wrong), false);
});

test('SQLite: init sets up once; a wrong or missing key is refused by the CLI and the cloud, nothing written', async () => {
  const data = join(dir, 'sqlite');
  const env = baseEnv({ GATEHOUSE_CLOUD_DATA_DIR: data });
  const init = await gh(env, ['init']);
  assert.equal(init.code, 0, init.stderr);
  assert.deepEqual(init.out, {
    dataDir: data,
    database: join(data, 'gatehouse.db'),
    secretKey: join(data, 'secret.key'),
    setUp: true,
  });
  assert.equal((await gh(env, ['init'])).out.setUp, false, 'a second init changes nothing');
  const t = await tenantCreate(env, 'right.example');
  assert.equal(t.code, 0, t.stderr);
  const tenantId = t.out.tenantId as string;

  const files = () => readdirSync(data).sort();
  const before = { files: files(), db: sha(join(data, 'gatehouse.db')) };

  // Wrong key from the environment (the scale-out mistake, on the embedded shape).
  const wrongEnv = { ...env, GATEHOUSE_CLOUD_SECRET_KEY: newKey() };
  for (const d of await refusedEverywhere(wrongEnv, tenantId)) {
    assert.equal(d.path, 'secretKey');
    assert.match(d.message, /not the one the database at .*gatehouse\.db was set up with/);
  }
  assert.match(await cloudRefuses(wrongEnv), /secretKey/);

  // Missing key: the file moved away. Nothing makes a new one.
  const keyFile = join(data, 'secret.key');
  const key = readFileSync(keyFile, 'utf8');
  rmSync(keyFile);
  for (const d of await refusedEverywhere(env, tenantId)) {
    assert.equal(d.path, 'secretKey');
    assert.ok(d.message.includes(keyFile), d.message);
  }
  assert.match(await cloudRefuses(env), /was set up with a secret key/);
  assert.equal(existsSync(keyFile), false, 'no new key was made');
  assert.deepEqual([...files(), 'secret.key'].sort(), before.files, 'no TLS material, no new files');
  assert.equal(sha(join(data, 'gatehouse.db')), before.db, 'the database file is byte for byte the same');

  // The right key, from the file or the environment, works.
  writeFileSync(keyFile, key, { mode: 0o600 });
  const list = await gh(env, ['tenant', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(
    list.out.map((x: { id: string }) => x.id),
    [tenantId],
  );
  assert.equal(
    (await gh({ ...env, GATEHOUSE_CLOUD_SECRET_KEY: key }, ['token', 'create', '--tenant', tenantId])).code,
    0,
  );
  const cloud = await startCloud({ port: 0, gatewayPort: 0 }, { env });
  await cloud.stop();
});

test('SQLite: a database from before key checks gets its check value at the cloud start, with the key it has', async () => {
  const data = join(dir, 'upgrade');
  const env = baseEnv({ GATEHOUSE_CLOUD_DATA_DIR: data });
  assert.equal((await gh(env, ['init'])).code, 0);
  const t = await tenantCreate(env, 'old.example');
  assert.equal(t.code, 0, t.stderr);
  // What an older version left behind: the schema and the tenant, no check value.
  const raw = new DatabaseSync(join(data, 'gatehouse.db'));
  raw.exec('DELETE FROM key_check');
  raw.close();

  const cli = await gh(env, ['tenant', 'list']);
  assert.equal(cli.out.error, 'config_invalid');
  assert.match(cli.out.detail[0].message, /has not been set up .*start the cloud once/);
  // A wrong key cannot become the database's key: it does not open the tenant's sealed secrets.
  assert.match(
    await cloudRefuses({ ...env, GATEHOUSE_CLOUD_SECRET_KEY: newKey() }),
    /does not open the secrets/,
  );
  const check = new DatabaseSync(join(data, 'gatehouse.db'), { readOnly: true });
  assert.equal(check.prepare('SELECT count(*) AS n FROM key_check').get()!.n, 0);
  check.close();

  const cloud = await startCloud({ port: 0, gatewayPort: 0 }, { env });
  await cloud.stop();
  assert.equal((await gh(env, ['tenant', 'list'])).code, 0);
  assert.equal(
    (await gh({ ...env, GATEHOUSE_CLOUD_SECRET_KEY: newKey() }, ['tenant', 'list'])).out.error,
    'config_invalid',
  );
});

let pgDb: TempDatabase | null = null;
after(async () => pgDb?.drop());

const pgCount = async (url: string, q: string): Promise<number> => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return Number((await c.query(q)).rows[0].n);
  } finally {
    await c.end();
  }
};

test('PostgreSQL: the nodes key is checked by every command and at start; nothing written on a mismatch', async (t) => {
  pgDb = await createTempDatabase();
  if (!pgDb) return t.skip('no PostgreSQL server');
  const key = newKey();
  const shared = { GATEHOUSE_CLOUD_DATABASE: pgDb.url };
  const nodeEnv = baseEnv({
    ...shared,
    GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'node'),
    GATEHOUSE_CLOUD_SECRET_KEY: key,
  });
  const tables = `SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'`;

  // Not set up yet: an ordinary command does not even migrate the empty database.
  const fresh = await gh(nodeEnv, ['tenant', 'list']);
  assert.equal(fresh.out.error, 'config_invalid');
  assert.match(fresh.out.detail[0].message, /has not been set up/);
  assert.doesNotMatch(fresh.out.detail[0].message, /password/i);
  assert.equal(await pgCount(pgDb.url, tables), 0);

  // The first node's start is first-time setup (no NATS needed for that part: state comes first).
  const node = await startCloud({ port: 0, gatewayPort: 0 }, { env: nodeEnv });
  await node.stop();
  const t1 = await tenantCreate(nodeEnv, 'pg.example');
  assert.equal(t1.code, 0, t1.stderr);
  const tenantId = t1.out.tenantId as string;
  const counts = async () => ({
    tenants: await pgCount(pgDb!.url, 'SELECT count(*) AS n FROM tenants'),
    tokens: await pgCount(pgDb!.url, 'SELECT count(*) AS n FROM registration_tokens'),
    clients: await pgCount(pgDb!.url, 'SELECT count(*) AS n FROM clients'),
    audit: await pgCount(pgDb!.url, 'SELECT count(*) AS n FROM audit'),
  });
  const before = await counts();

  // An operator host without the nodes' key: no DATA_DIR/secret.key there, none is made.
  const opDir = join(dir, 'operator');
  const noKey = baseEnv({ ...shared, GATEHOUSE_CLOUD_DATA_DIR: opDir });
  for (const d of await refusedEverywhere(noKey, tenantId)) {
    assert.equal(d.path, 'secretKey');
    assert.ok(d.message.includes(join(opDir, 'secret.key')), d.message);
  }
  assert.equal(existsSync(opDir), false);
  // A wrong key, for the CLI and for a node (which would otherwise join NATS and serve 500s).
  const wrong = { ...nodeEnv, GATEHOUSE_CLOUD_SECRET_KEY: newKey() };
  for (const d of await refusedEverywhere(wrong, tenantId))
    assert.match(d.message, /not the one the database/);
  assert.match(
    await cloudRefuses({ ...wrong, GATEHOUSE_CLOUD_NATS_URL: NATS_URL }),
    /not the one the database/,
  );
  const bare = join(dir, 'node-without-key');
  assert.match(
    await cloudRefuses({ ...noKey, GATEHOUSE_CLOUD_DATA_DIR: bare, GATEHOUSE_CLOUD_NATS_URL: NATS_URL }),
    /secretKey/,
  );
  assert.equal(existsSync(bare), false, 'a node without the key makes no key of its own');
  assert.deepEqual(await counts(), before, 'nothing was written');

  // The right key works for both.
  const tok = await gh(nodeEnv, ['token', 'create', '--tenant', tenantId]);
  assert.equal(tok.code, 0, tok.stderr);
  const again = await startCloud({ port: 0, gatewayPort: 0 }, { env: nodeEnv });
  await again.stop();
});
