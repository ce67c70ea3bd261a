/**
 * Child processes for the demo and the end-to-end tests: each in its own process group (so a
 * stop takes its helpers with it), every byte of its output kept (tests grep it for a canary
 * password) and optionally copied to a log file. Whatever is still running when this process
 * exits is killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or 128+signal) once the process has exited. */
  exited: Promise<number>;
  running(): boolean;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<Child>();
process.once('exit', () => {
  for (const c of live) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {}
  }
});

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append the output to this file. */
  logFile?: string;
  /** Called with each chunk (e.g. to echo a child's output). */
  onOutput?: (chunk: string) => void;
  stdin?: string;
  /** Node's own flags, before FILE (`--max-semi-space-size=1`). */
  nodeArgs?: string[];
}

/** Starts `node FILE ARGS` with this process's Node (the project's pinned Node 24). */
export const spawnNode = (name: string, file: string, args: string[], opts: SpawnOptions = {}): Child => {
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), file, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  if (proc.pid === undefined) throw new Error(`${name}: could not start`);
  proc.stdin?.end(opts.stdin ?? '');
  let out = '';
  let log: WriteStream | undefined;
  if (opts.logFile) log = createWriteStream(opts.logFile, { flags: 'a', mode: 0o600 });
  const onData = (d: Buffer) => {
    const s = d.toString('utf8');
    out += s;
    log?.write(s);
    opts.onOutput?.(s);
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  let alive = true;
  const exited = new Promise<number>((resolve) => {
    proc.once('close', (code, signal) => {
      alive = false;
      live.delete(child);
      log?.end();
      resolve(code ?? 128 + (SIGNALS[signal ?? ''] ?? 0));
    });
  });
  const child: Child = {
    name,
    proc,
    pid: proc.pid,
    output: () => out,
    exited,
    running: () => alive,
    stop: async (graceMs = 5000) => {
      if (!alive) return;
      try {
        process.kill(-proc.pid!, 'SIGTERM');
      } catch {}
      const timer = setTimeout(() => {
        try {
          process.kill(-proc.pid!, 'SIGKILL');
        } catch {}
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  live.add(child);
  return child;
};

/** Runs a command to completion and returns its exit code and output. */
export const runNode = async (
  file: string,
  args: string[],
  opts: SpawnOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> => {
  const proc = spawn(process.execPath, [file, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  proc.stdin.end(opts.stdin ?? '');
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => {
    stdout += d;
    opts.onOutput?.(String(d));
  });
  proc.stderr.on('data', (d) => {
    stderr += d;
    opts.onOutput?.(String(d));
  });
  const code = await new Promise<number>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (c) => resolve(c ?? 1));
  });
  return { code, stdout, stderr };
};

/** Polls `probe` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export const waitFor = async <T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 250,
): Promise<T> => {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
};

/** A port the OS says is free now (for servers whose port must be known before they start). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });

export const AGENT_MAIN = join(ROOT, 'apps/agent/src/main.ts');

/**
 * Registers an agent with a one-time token through the real `register` command, as an installer
 * would. `agentFile` may be the downloaded bundle instead of the source.
 */
export const registerAgentCli = (
  o: { cloudUrl: string; caFile: string; token: string; stateDir: string; agentFile?: string },
  opts: SpawnOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> =>
  runNode(
    o.agentFile ?? AGENT_MAIN,
    ['register', '--cloud', o.cloudUrl, '--ca-file', o.caFile, '--token', o.token, '--state-dir', o.stateDir],
    opts,
  );
