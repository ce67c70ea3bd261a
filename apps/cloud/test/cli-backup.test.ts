/**
 * `gatehouse restore` refuses what it cannot trust and leaves nothing behind: a file that differs
 * from the manifest, a key that is not the database's (a backup whose key came from
 * GATEHOUSE_CLOUD_SECRET_KEY, restored with another), a directory that is not a backup. The real CLI.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { runNode } from '../../../test/harness/children.ts';

const CLI = resolve(import.meta.dirname, '../src/cli.ts');
let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gh-cli-backup-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const gh = async (env: Record<string, string>, ...args: string[]) => {
  const r = await runNode(CLI, [...args, '--json'], {
    env: { PATH: process.env.PATH, GATEHOUSE_CLOUD_LOG_LEVEL: 'silent', ...env },
  });
  return { code: r.code, out: r.stdout.trim() ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
};

test('restore checks the manifest and the key, and removes what it wrote when either fails', async () => {
  const key = randomBytes(32).toString('base64');
  const data = { GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'cloud'), GATEHOUSE_CLOUD_SECRET_KEY: key };
  assert.equal((await gh(data, 'init')).code, 0);
  const bk = join(dir, 'bk');
  const made = await gh(data, 'backup', '--out', bk);
  assert.equal(made.code, 0, made.stderr);
  assert.equal(made.out.secretKey, 'configured', 'a key from configuration is not written into the backup');
  assert.ok(!existsSync(join(bk, 'secret.key')));

  const target = join(dir, 'new');
  const noKey = await gh({}, 'restore', '--from', bk, '--data-dir', target);
  assert.equal(noKey.code, 1);
  assert.equal(noKey.out.error, 'config_invalid');
  const wrongKey = await gh(
    { GATEHOUSE_CLOUD_SECRET_KEY: randomBytes(32).toString('base64') },
    'restore',
    '--from',
    bk,
    '--data-dir',
    target,
  );
  assert.equal(wrongKey.code, 1);
  assert.equal(wrongKey.out.error, 'config_invalid');
  assert.match(JSON.stringify(wrongKey.out.detail), /not the one the backed-up database was set up with/);
  assert.ok(!existsSync(target), 'a failed restore leaves no data directory behind');

  const ok = await gh({ GATEHOUSE_CLOUD_SECRET_KEY: key }, 'restore', '--from', bk, '--data-dir', target);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(
    (await gh({ GATEHOUSE_CLOUD_DATA_DIR: target, GATEHOUSE_CLOUD_SECRET_KEY: key }, 'tenant', 'list')).code,
    0,
  );

  appendFileSync(join(bk, 'gatehouse.db'), 'x');
  const altered = await gh(
    { GATEHOUSE_CLOUD_SECRET_KEY: key },
    'restore',
    '--from',
    bk,
    '--data-dir',
    join(dir, 'n2'),
  );
  assert.equal(altered.out.error, 'validation_failed');
  assert.match(JSON.stringify(altered.out.detail), /differs from the manifest/);
  assert.ok(!existsSync(join(dir, 'n2')));

  const notBackup = join(dir, 'not-a-backup');
  const none = await gh(
    { GATEHOUSE_CLOUD_SECRET_KEY: key },
    'restore',
    '--from',
    notBackup,
    '--data-dir',
    join(dir, 'n3'),
  );
  assert.equal(none.out.error, 'validation_failed');
  // The restored directory holds the database only: the key stays in configuration.
  assert.deepEqual(readdirSync(target).sort(), ['gatehouse.db']);
});
