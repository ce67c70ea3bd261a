/**
 * `npm run cloud` under a process supervisor: the signal it sends to npm must reach the cloud. With a
 * plain `node …` script, npm signals the shell it started, the shell does not pass it on, and the
 * cloud outlives its parent, keeping its ports (the next start fails with EADDRINUSE).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname, '..', '..', '..');

const childrenOf = (pid: number): number[] =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        // Field 4 of /proc/PID/stat is the parent; the command name (field 2) may hold spaces.
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });

test('SIGTERM to `npm run cloud` stops the cloud itself and frees its port', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-npm-cloud-'));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_CLOUD_')),
  );
  const npm = spawn('npm', ['run', '--silent', 'cloud'], {
    cwd: root,
    env: {
      ...env,
      GATEHOUSE_CLOUD_DATA_DIR: dir,
      GATEHOUSE_CLOUD_PORT: '0',
      GATEHOUSE_CLOUD_GATEWAY_PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so the clean-up reaches a cloud that outlived npm.
    detached: true,
  });
  t.after(() => {
    try {
      process.kill(-npm.pid!, 'SIGKILL');
    } catch {}
    npm.stdout.destroy();
    npm.stderr.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the cloud did not start:\n${out}`)), 60_000);
    npm.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on https:\/\/[^:]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    npm.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    npm.once('exit', () => reject(new Error(`npm exited early:\n${out}`)));
  });
  // npm's child is the cloud itself (the script execs node), not a shell in between.
  const kids = childrenOf(npm.pid!);
  assert.equal(kids.length, 1, `npm has one child: ${kids.join(', ')}`);
  const cloudPid = kids[0]!;
  assert.match(readFileSync(`/proc/${cloudPid}/cmdline`, 'utf8'), /apps\/cloud\/src\/main\.ts/);
  assert.equal(await refused(port), false, 'the cloud is listening');

  npm.kill('SIGTERM');
  const deadline = Date.now() + 30_000;
  while (alive(cloudPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(alive(cloudPid), false, 'the cloud exited with its npm parent');
  assert.equal(await refused(port), true, 'its port is free for the next start');
});
