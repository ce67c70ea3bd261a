/**
 * Both command lines answer --help (overview, group, command) and --version, and treat a usage
 * mistake as a catalog error with a hint, from the same table that parses them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { program as agentProgram } from '../../agent/src/program.ts';
import { main, program } from '../src/cli.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const version = (pkg: string) => JSON.parse(readFileSync(join(ROOT, pkg), 'utf8')).version as string;
const empty = mkdtempSync(join(tmpdir(), 'gatehouse-help-'));
after(() => rmSync(empty, { recursive: true, force: true }));
// No state anywhere: help and usage errors must never need (or create) a data directory.
const env = { GATEHOUSE_CLOUD_DATA_DIR: join(empty, 'data'), GATEHOUSE_CLOUD_LOG_LEVEL: 'silent' };

const run = async (argv: string[]) => {
  let stdout = '';
  let stderr = '';
  const code = await main(
    argv,
    { stdout: (s) => (stdout += `${s}\n`), stderr: (s) => (stderr += `${s}\n`), readStdin: async () => '' },
    env,
  );
  return { code, stdout, stderr };
};

const spawn = (file: string, args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    execFile(
      process.execPath,
      [file, ...args],
      { cwd: ROOT, env: { ...process.env, ...env } },
      (err, stdout, stderr) => done({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });

const flagsIn = (usage: string) => new Set([...usage.matchAll(/--([a-z][\w-]*)/g)].map((m) => m[1]!));

test('every gatehouse command answers --help with exit 0, its synopsis and each flag it parses', async () => {
  const names = Object.keys(program.commands);
  assert.ok(names.length >= 20, names.join(', '));
  for (const name of names) {
    const c = program.commands[name]!;
    const r = await run([...name.split(' '), '--help']);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^usage: gatehouse ${name}`), name);
    for (const flag of [...Object.keys(c.options), 'json', 'help'])
      assert.match(r.stdout, new RegExp(`^ {2}--${flag}\\b`, 'm'), `${name} --help names --${flag}`);
    // The synopsis is written by hand next to the options: it must name exactly the flags parsed.
    assert.deepEqual(
      [...flagsIn(c.usage)].sort(),
      Object.keys(c.options).sort(),
      `${name}: usage and options`,
    );
    assert.ok(c.summary, `${name} has a summary`);
  }
  // Required flags come from the schema: tenant create's --name is, user list's --limit has a default.
  assert.match((await run(['tenant', 'create', '--help'])).stdout, /--name N +required/);
  assert.match((await run(['user', 'list', '--help'])).stdout, /--limit N +default 100/);
});

test('gatehouse GROUP --help lists its subcommands; a bare group or a typo is a usage error with a hint', async () => {
  const groups = [
    ...new Set(Object.keys(program.commands).flatMap((n) => (n.includes(' ') ? [n.split(' ')[0]!] : []))),
  ];
  for (const g of groups) {
    const r = await run([g, '--help']);
    assert.equal(r.code, 0, `${g}: ${r.stderr}`);
    for (const n of Object.keys(program.commands).filter((n) => n.startsWith(`${g} `)))
      assert.match(r.stdout, new RegExp(`gatehouse ${n}\\b`), `${g} --help lists ${n}`);
  }
  const bare = await run(['tenant']);
  assert.equal(bare.code, 2);
  assert.match(
    bare.stderr,
    /^error: validation_failed: .*\n {2}\(command\): "tenant" needs a subcommand\n {2}hint: see gatehouse tenant --help/,
  );
  const typo = await run(['tenant', 'shwo', '--json']);
  assert.equal(typo.code, 2);
  assert.equal(JSON.parse(typo.stdout).detail[0].hint, 'did you mean "gatehouse tenant show"?');
  const unknown = await run(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const overview = await run(['--help']);
  assert.equal(overview.code, 0);
  for (const n of Object.keys(program.commands))
    assert.match(overview.stdout, new RegExp(`gatehouse ${n}\\b`));
});

test('an unknown flag is validation_failed with the closest flag, exit 2, and no node parser error', async () => {
  const r = await run(['settings', 'set', '--tenant', 't', '--lockout-treshold', '3', '--json']);
  assert.equal(r.code, 2);
  const body = JSON.parse(r.stdout);
  assert.equal(body.error, 'validation_failed');
  assert.deepEqual(body.detail, [
    { path: '--lockout-treshold', message: 'unknown flag', hint: 'did you mean --lockout-threshold?' },
  ]);
  assert.match(r.stderr, /hint: did you mean --lockout-threshold\?/);
  assert.match(r.stderr, /usage: gatehouse settings set/);
  assert.doesNotMatch(r.stderr + r.stdout, /ERR_PARSE_ARGS|at parseArgs|node:internal/);
  const missingValue = await run(['user', 'list', '--tenant']);
  assert.equal(missingValue.code, 2);
  assert.match(missingValue.stderr, / {2}--tenant: needs a value\n {2}hint: write --tenant VALUE/);
  const positional = await run(['tenant', 'list', 'extra']);
  assert.equal(positional.code, 2);
  assert.match(positional.stderr, /\(arguments\): Unexpected argument 'extra'/);
});

test('gatehouse --version and gatehouse-agent --version print the package versions, as processes', async () => {
  const cloud = await spawn('apps/cloud/src/cli.ts', ['--version']);
  assert.equal(cloud.code, 0, cloud.stderr);
  assert.equal(cloud.stdout.trim(), `gatehouse ${version('apps/cloud/package.json')}`);
  const tenantHelp = await spawn('apps/cloud/src/cli.ts', ['tenant', 'create', '--help']);
  assert.equal(tenantHelp.code, 0, tenantHelp.stderr);
  assert.match(tenantHelp.stdout, /--admin-password-stdin/);
  const bad = await spawn('apps/cloud/src/cli.ts', ['tenant', 'list', '--bogus']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^error: validation_failed: /);
  const agent = await spawn('apps/agent/src/main.ts', ['--version']);
  assert.equal(agent.code, 0, agent.stderr);
  assert.equal(agent.stdout.trim(), `gatehouse-agent ${version('apps/agent/package.json')}`);
});

test('every gatehouse-agent command answers --help; an unknown flag or a missing argument exits 2 with a hint', async () => {
  const overview = await spawn('apps/agent/src/main.ts', ['--help']);
  assert.equal(overview.code, 0);
  for (const [name, c] of Object.entries(agentProgram.commands)) {
    assert.match(overview.stdout, new RegExp(`gatehouse-agent ${name}\\b`));
    const r = await spawn('apps/agent/src/main.ts', [name, '--help']);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^usage: gatehouse-agent ${name}`));
    for (const flag of Object.keys(c.options))
      assert.match(r.stdout, new RegExp(`^ {2}--${flag}\\b`, 'm'), `${name} --${flag}`);
    assert.deepEqual(
      [...flagsIn(c.usage)].sort(),
      Object.keys(c.options).sort(),
      `${name}: usage and options`,
    );
  }
  const typo = await spawn('apps/agent/src/main.ts', ['status', '--stat-dir', '/tmp/x']);
  assert.equal(typo.code, 2);
  assert.match(
    typo.stderr,
    /^validation_failed: .*\n {2}--stat-dir: unknown flag\n {2}hint: did you mean --state-dir\?/,
  );
  assert.doesNotMatch(typo.stderr, /ERR_PARSE_ARGS|node:internal/);
  const noUser = await spawn('apps/agent/src/main.ts', ['test-auth']);
  assert.equal(noUser.code, 2);
  assert.match(noUser.stderr, /takes USER/);
  const noCloud = await spawn('apps/agent/src/main.ts', ['register', '--token', 'x']);
  assert.equal(noCloud.code, 2);
  assert.match(noCloud.stderr, /"path": "--cloud"/);
});
