/**
 * Backup and restore as docs/operations.md writes them: the shell blocks of its "Backup" and
 * "Restore" sections are run exactly as written (with `gatehouse` the real CLI), against a cloud
 * under sign-in load (password grants through a real agent and a real slapd), on SQLite and on
 * PostgreSQL. No sign-in fails while the backup is taken; a cloud started on the restored state
 * at the same URLs has the same tenant, client and agent: the agent process that was registered
 * before reconnects on its own and signs users in.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startCloud } from '../apps/cloud/src/server.ts';
import { ROOT, waitFor } from './harness/children.ts';
import { createTempDatabase, type TempDatabase } from './harness/postgres.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'backup.test';
const PW = `Backup-${Math.random().toString(36).slice(2, 8)}-Pw1`;
// One user per load worker: smart lockout counts a user's concurrent sign-ins.
const USERS = ['b1', 'b2', 'b3', 'b4'];
const CLI = join(ROOT, 'apps/cloud/src/cli.ts');
let slapd: SlapdInstance;
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-backup-'));
  slapd = await startSlapd({ users: USERS.map((uid) => ({ uid, password: PW })) });
});
after(async () => {
  await slapd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The shell block that follows `<!-- e2e-backup: NAME -->` in docs/operations.md. */
const docBlock = (name: string): string => {
  const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const m = new RegExp(`<!-- e2e-backup: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(doc);
  assert.ok(m, `docs/operations.md has the block ${name}`);
  return m[1]!;
};

/** Runs a documented block in bash, `gatehouse` being the real CLI, with only the given settings. */
const runDoc = (name: string, vars: Record<string, string>) =>
  new Promise<{ code: number; out: string }>((resolve, reject) => {
    const script = `set -euo pipefail\ngatehouse() { "${process.execPath}" "${CLI}" "$@"; }\n${docBlock(name)}`;
    const p = spawn('bash', ['-c', script], {
      env: { PATH: process.env.PATH, GATEHOUSE_CLOUD_LOG_LEVEL: 'silent', ...vars },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code: code ?? 1, out }));
  });

const startLoad = (stack: Stack) => {
  const codes: string[] = [];
  let running = true;
  const loops = USERS.map(async (u) => {
    while (running) codes.push((await stack.passwordGrant(`${u}@${DOMAIN}`, PW)).code);
  });
  return {
    codes,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return codes;
    },
  };
};

for (const engine of ['sqlite', 'postgres'] as const) {
  test(`backup under sign-in load, restore, the same tenant, client and agent sign in (${engine})`, async (t) => {
    let source: TempDatabase | null = null;
    let target: TempDatabase | null = null;
    if (engine === 'postgres') {
      source = await createTempDatabase();
      target = await createTempDatabase();
      if (!source || !target) return t.skip('no PostgreSQL');
    }
    const stack = await startStack({
      domain: DOMAIN,
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPassword: slapd.servicePassword,
        baseDns: [slapd.peopleDn],
        extra: { upnAttribute: 'uid', upnDomain: DOMAIN },
      },
      expectUsers: USERS.map((u) => `${u}@${DOMAIN}`),
      cloud: source ? { database: source.url } : {},
    });
    let restored: Awaited<ReturnType<typeof startCloud>> | undefined;
    try {
      const original = stack.cloud;
      const dataDir = original.ctx.config.dataDir;
      const [agentId] = original.gateway.connections().map((c) => c.agentId);
      assert.ok(agentId);
      const backup = join(dir, `backup-${engine}`);

      const load = startLoad(stack);
      await waitFor(
        'sign-ins before the backup',
        () => load.codes.filter((c) => c === 'success').length >= 20,
      );
      const before = (await stack.signIns()).length;
      const took = await runDoc(
        `${engine}-backup`,
        source
          ? { BACKUP: backup, GATEHOUSE_CLOUD_DATA_DIR: dataDir, GATEHOUSE_CLOUD_DATABASE: source.url }
          : { BACKUP: backup, GATEHOUSE_CLOUD_DATA_DIR: dataDir },
      );
      assert.equal(took.code, 0, took.out);
      // The load goes on for a while after the backup too: the copy must not disturb it either.
      await new Promise((r) => setTimeout(r, 500));
      const codes = await load.stop();
      assert.deepEqual([...new Set(codes)], ['success'], 'no sign-in failed while the backup was taken');
      assert.ok(codes.length >= 20);
      if (engine === 'sqlite') {
        assert.equal(statSync(backup).mode & 0o777, 0o700);
        for (const f of ['gatehouse.db', 'secret.key', 'tls/ca.key', 'tls/server.key', 'manifest.json'])
          assert.equal(statSync(join(backup, f)).mode & 0o777, 0o600, f);
        const again = await runDoc('sqlite-backup', { BACKUP: backup, GATEHOUSE_CLOUD_DATA_DIR: dataDir });
        assert.equal(again.code, 1, 'a second backup into the same directory is refused');
        assert.match(again.out, /conflict/);
      } else {
        const refused = await runDoc('sqlite-backup', {
          BACKUP: join(dir, 'refused'),
          GATEHOUSE_CLOUD_DATA_DIR: dataDir,
          GATEHOUSE_CLOUD_DATABASE: source!.url,
        });
        assert.equal(refused.code, 1);
        assert.match(
          refused.out,
          /conflict[\s\S]*pg_dump/,
          'gatehouse backup on PostgreSQL points to pg_dump',
        );
      }

      // The original cloud goes away; its agent keeps running and keeps trying to reconnect.
      const { url, gatewayUrl } = original;
      await original.stop();
      const newDataDir = join(dir, `restored-${engine}`);
      const put = await runDoc(
        `${engine}-restore`,
        target
          ? { BACKUP: backup, GATEHOUSE_CLOUD_DATA_DIR: newDataDir, GATEHOUSE_CLOUD_DATABASE: target.url }
          : { BACKUP: backup, NEW_DATA_DIR: newDataDir },
      );
      assert.equal(put.code, 0, put.out);
      if (engine === 'sqlite') {
        const twice = await runDoc('sqlite-restore', { BACKUP: backup, NEW_DATA_DIR: newDataDir });
        assert.equal(twice.code, 1, 'a restore never overwrites');
        assert.match(twice.out, /conflict/);
      }

      restored = await startCloud(
        {
          dataDir: newDataDir,
          ...(target ? { database: target.url } : {}),
          publicUrl: url,
          port: Number(new URL(url).port),
          gatewayPort: Number(new URL(gatewayUrl.replace(/^wss:/, 'https:')).port),
          // Fixed ports above would put metrics on their default port, which other clouds may hold.
          metricsPort: 'off',
          logLevel: 'silent',
        },
        { env: {} },
      );
      const rows = await restored.ctx.db
        .selectFrom('signins')
        .select('id')
        .where('tenant_id', '=', stack.tenantId)
        .execute();
      assert.ok(rows.length >= before, `the backup holds the ${before} sign-ins logged before it began`);
      await waitFor(
        'the registered agent to reconnect to the restored cloud',
        () => restored!.gateway.connections().some((c) => c.ready && c.agentId === agentId),
        60_000,
      );
      // The stack's own client, issuer URL and pinned CA: nothing on the client side changed.
      const answer = await stack.passwordGrant(`b1@${DOMAIN}`, PW);
      assert.equal(answer.code, 'success', JSON.stringify(answer.body));
      await restored.authenticator.flush();
      const last = await restored.ctx.db
        .selectFrom('signins')
        .selectAll()
        .where('tenant_id', '=', stack.tenantId)
        .orderBy('id', 'desc')
        .executeTakeFirstOrThrow();
      assert.equal(last.outcome, 'success');
      assert.equal(last.agent_id, agentId, 'the same registered agent checked the password');
    } finally {
      await restored?.stop();
      await stack.stop();
      await source?.drop();
      await target?.drop();
    }
  });
}
