import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { openState } from '../src/bootstrap.ts';
import { loadCloudConfig } from '../src/config.ts';
import { listAudit } from '../src/store/audit.ts';
import { verifyPassword } from '../src/store/password.ts';
import { consumeRegistrationToken } from '../src/store/registration-tokens.ts';
import { findByLogin } from '../src/store/users.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = 'apps/cloud/src/cli.ts';
const CANARY = 'Canary-Cli-pw-5d2e!';
let dir: string;
let env: NodeJS.ProcessEnv;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: CLI output is checked field by field below.
  json: () => any;
}

/** Runs the CLI as an operator would (`npx node apps/cloud/src/cli.ts ...`), optionally feeding stdin. */
const gh = (args: string[], input?: string, viaNpx = false): Promise<Run> =>
  new Promise((done) => {
    const [cmd, argv] = viaNpx ? ['npx', ['node', CLI, ...args]] : [process.execPath, [CLI, ...args]];
    const child = execFile(cmd, argv, { cwd: ROOT, env, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      done({ code, stdout, stderr, json: () => JSON.parse(stdout) });
    });
    child.stdin?.end(input ?? '');
  });

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-'));
  writeFileSync(join(dir, 'admin.pw'), `${CANARY}\n`, { mode: 0o600 });
  env = { ...process.env, GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'data'), GATEHOUSE_CLOUD_LOG_LEVEL: 'silent' };
  for (const k of Object.keys(env))
    if (
      k.startsWith('GATEHOUSE_CLOUD_') &&
      !['GATEHOUSE_CLOUD_DATA_DIR', 'GATEHOUSE_CLOUD_LOG_LEVEL'].includes(k)
    )
      delete env[k];
});
after(() => rmSync(dir, { recursive: true, force: true }));

let tenantId = '';

test('tenant create, with the password from a file; show and list', async () => {
  // First-time setup is explicit: no other command creates a data directory.
  assert.equal((await gh(['init'])).code, 0);
  const r = await gh([
    'tenant',
    'create',
    '--name',
    'Contoso',
    '--domain',
    'contoso.com',
    '--admin-upn',
    'admin@contoso.com',
    '--admin-password-file',
    join(dir, 'admin.pw'),
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const out = r.json();
  tenantId = out.tenantId;
  assert.match(tenantId, /^[0-9a-f-]{36}$/);
  assert.match(out.domain.txtRecord, /^gatehouse-verify=[0-9a-f]{32}$/);

  const shown = await gh(['tenant', 'show', '--tenant', tenantId, '--json'], undefined, true);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.json().name, 'Contoso');
  assert.equal(shown.json().ptaEnabled, false);
  assert.equal(shown.json().activeAgents, 0);
  const text = await gh(['tenant', 'show', '--tenant', tenantId]);
  assert.match(text.stdout, /pass-through authentication: off/);
});

test('bad usage exits 2 with the catalog error and usage; catalog errors exit 1', async () => {
  const missing = await gh([
    'tenant',
    'create',
    '--name',
    'X',
    '--domain',
    'x.com',
    '--admin-upn',
    'a@x.com',
  ]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error: validation_failed: /);
  assert.match(missing.stderr, /usage: gatehouse tenant create/);
  assert.match(missing.stderr, /admin-password-stdin/);

  const unknownFlag = await gh(['settings', 'set', '--tenant', tenantId, '--bogus', '--json']);
  assert.equal(unknownFlag.code, 2);
  assert.equal(unknownFlag.json().error, 'validation_failed');
  assert.equal((await gh(['settings', 'set', '--tenant', tenantId, '--pta', 'maybe'])).code, 2);
  assert.equal((await gh(['frobnicate', 'everything'])).code, 2);
  assert.equal((await gh(['domain', 'add', '--tenant', tenantId, '--name', 'not a domain'])).code, 2);

  const taken = await gh(
    [
      'tenant',
      'create',
      '--name',
      'Again',
      '--domain',
      'contoso.com',
      '--admin-upn',
      'a@contoso.com',
      '--admin-password-stdin',
      '--json',
    ],
    'Another-pw-123\n',
  );
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /^error: conflict: .*\n {2}detail: .*domain_taken/);
  assert.equal(taken.json().error, 'conflict');

  const noAgent = await gh(['settings', 'set', '--tenant', tenantId, '--pta', 'on']);
  assert.equal(noAgent.code, 1);
  assert.match(noAgent.stderr, /^error: no_active_agent: /);
  const noTenant = await gh(['agents', 'list', '--tenant', 'nope']);
  assert.equal(noTenant.code, 1);
  assert.match(noTenant.stderr, /^error: not_found: /);
});

test('second tenant from stdin; domains, users, clients, tokens, settings, agents, sign-ins', async () => {
  const t2 = await gh(
    [
      'tenant',
      'create',
      '--name',
      'Fabrikam',
      '--domain',
      'fabrikam.com',
      '--admin-upn',
      'root@fabrikam.com',
      '--admin-password-stdin',
      '--json',
    ],
    'Stdin-pw-12345\n',
  );
  assert.equal(t2.code, 0, t2.stderr);

  assert.equal((await gh(['domain', 'add', '--tenant', tenantId, '--name', 'contoso.net'])).code, 0);
  const verified = await gh([
    'domain',
    'verify',
    '--tenant',
    tenantId,
    '--name',
    'contoso.net',
    '--force',
    '--json',
  ]);
  assert.equal(verified.code, 0, verified.stderr);
  assert.equal(verified.json().verified, true);
  const domains = (await gh(['domain', 'list', '--tenant', tenantId, '--json'])).json();
  assert.deepEqual(
    domains.map((d: { name: string; verified: boolean }) => [d.name, d.verified]),
    [
      ['contoso.com', false],
      ['contoso.net', true],
    ],
  );

  writeFileSync(join(dir, 'helpdesk.pw'), 'Helpdesk-pw-1\n');
  const u = await gh([
    'user',
    'create',
    '--tenant',
    tenantId,
    '--upn',
    'Helpdesk@Contoso.com',
    '--password-file',
    join(dir, 'helpdesk.pw'),
    '--role',
    'hybrid_identity_admin',
    '--role',
    'user_admin',
    '--json',
  ]);
  assert.equal(u.code, 0, u.stderr);
  assert.deepEqual(u.json().roles, ['hybrid_identity_admin', 'user_admin']);
  assert.equal(
    (
      await gh([
        'user',
        'create',
        '--tenant',
        tenantId,
        '--upn',
        'x@contoso.com',
        '--password-file',
        join(dir, 'helpdesk.pw'),
        '--role',
        'emperor',
      ])
    ).code,
    2,
  );
  const users = (await gh(['user', 'list', '--tenant', tenantId, '--search', 'help', '--json'])).json();
  assert.deepEqual(
    users.users.map((x: { upn: string }) => x.upn),
    ['helpdesk@contoso.com'],
  );

  const c = await gh([
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Mail',
    '--redirect-uri',
    'https://mail.contoso.com/cb',
    '--grant-type',
    'password',
    '--json',
  ]);
  assert.equal(c.code, 0, c.stderr);
  assert.ok(c.json().clientSecret);
  assert.deepEqual(c.json().grantTypes, ['authorization_code', 'refresh_token', 'password']);
  const pub = await gh([
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'SPA',
    '--redirect-uri',
    'http://localhost:3000/cb',
    '--public',
    '--json',
  ]);
  assert.equal(pub.json().clientSecret, undefined);

  const tok = await gh(['token', 'create', '--tenant', tenantId, '--json']);
  assert.equal(tok.code, 0, tok.stderr);
  const { token, expiresAt } = tok.json();
  assert.match(token, /^ghr_/);
  assert.ok(expiresAt > Date.now() + 3_000_000 && expiresAt <= Date.now() + 3_600_000);
  assert.match((await gh(['token', 'create', '--tenant', tenantId])).stdout, /^ghr_\S+\nexpires /);

  const set = await gh([
    'settings',
    'set',
    '--tenant',
    tenantId,
    '--legacy-auth',
    'on',
    '--login-attribute',
    'mail',
    '--json',
  ]);
  assert.equal(set.code, 0, set.stderr);
  assert.deepEqual(
    [set.json().legacyAuth, set.json().loginAttribute, set.json().ptaEnabled],
    [true, 'mail', false],
  );

  assert.deepEqual((await gh(['agents', 'list', '--tenant', tenantId, '--json'])).json(), []);
  assert.deepEqual(
    (await gh(['signins', 'list', '--tenant', tenantId, '--limit', '5', '--json'])).json(),
    [],
  );

  // What the CLI wrote is real state: the token registers once, the password verifies, the audit trail exists.
  const { db } = await openState(loadCloudConfig({ GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'data') }));
  try {
    assert.equal(await consumeRegistrationToken(db, token, Date.now()), tenantId);
    const admin = await findByLogin(db, tenantId, 'admin@contoso.com', 'upn');
    assert.equal(
      await verifyPassword(CANARY, admin!.passwordHash!),
      true,
      'the trailing newline is not part of the password',
    );
    const actions = (await listAudit(db, tenantId)).map((a) => `${a.actor} ${a.action}`).sort();
    assert.deepEqual(actions, [
      'operator client.create',
      'operator client.create',
      'operator domain.add',
      'operator domain.verify',
      'operator registration_token.create',
      'operator registration_token.create',
      'operator settings.update',
      'operator tenant.create',
      'operator user.create',
    ]);
  } finally {
    await db.destroy();
  }
  const files = readdirSync(join(dir, 'data')).filter((f) => f.startsWith('gatehouse.db'));
  for (const f of files)
    assert.equal(readFileSync(join(dir, 'data', f)).includes(CANARY), false, `canary in ${f}`);
});
