#!/usr/bin/env node
/**
 * `gatehouse`: the service operator's command line. It opens the same state as the server (same
 * GATEHOUSE_* environment), so it works on a stopped or running embedded install alike.
 *
 * Exit status: 0 success, 2 bad usage, 1 a catalog error (or anything unexpected).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GatehouseError, isGatehouseError } from '@gatehouse/protocol';
import { openState } from './bootstrap.ts';
import { type CliEnv, commands } from './cli/commands.ts';
import { loadCloudConfig } from './config.ts';

const USAGE = `usage: gatehouse <command> [flags] [--json]

${Object.entries(commands)
  .map(([name, c]) => `  gatehouse ${name} ${c.usage}`)
  .join('\n')}

Every command takes --json (one JSON document on stdout). Passwords are read from a file or stdin,
never from the command line (it would show in the process list and shell history).`;

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  readStdin: () => Promise<string>;
}

const readAll = async (): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

const usageError = (io: Io, json: boolean, detail: unknown, usage?: string): number => {
  const err = new GatehouseError('validation_failed', detail);
  if (json) io.stdout(JSON.stringify(err.toJSON()));
  io.stderr(`error: ${err.code}: ${err.message}\n  detail: ${JSON.stringify(detail)}\n${usage ?? USAGE}`);
  return 2;
};

export const main = async (argv: string[], io: Io, env: NodeJS.ProcessEnv = process.env): Promise<number> => {
  const json = argv.includes('--json');
  // Commands are two words ("tenant create"), except first-time setup ("init").
  const name = commands[argv[0] ?? ''] ? argv[0]! : argv.slice(0, 2).join(' ');
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === 'help') {
    io.stdout(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  const command = commands[name];
  if (!command) return usageError(io, json, [{ path: '(command)', message: `unknown command "${name}"` }]);
  const usage = `usage: gatehouse ${name} ${command.usage}`;
  if (argv.includes('--help')) {
    io.stdout(usage);
    return 0;
  }
  let values: Record<string, unknown>;
  try {
    values = parseArgs({
      args: argv.slice(name.split(' ').length),
      options: { ...command.options, json: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return usageError(io, json, [{ path: '(flags)', message: (err as Error).message }], usage);
  }
  const parsed = command.schema.safeParse(values);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: `--${i.path.join('.')}`, message: i.message }));
    return usageError(io, json, issues, usage);
  }

  let state: Awaited<ReturnType<typeof openState>> | undefined;
  try {
    const config = loadCloudConfig(env);
    // Restore fills a data directory that has no state yet: there is none to open.
    if (command.withoutState) {
      const out = await command.run({ config, now: () => Date.now() } as CliEnv, parsed.data as never);
      io.stdout(json ? JSON.stringify(out.json) : out.text);
      return 0;
    }
    state = await openState(config, undefined, { create: command.createsState === true });
    const cliEnv: CliEnv = {
      config,
      db: state.db,
      secrets: state.secrets,
      state: state.info,
      now: () => Date.now(),
      readPassword: async (file, stdin) => {
        const raw = stdin ? await io.readStdin() : readFileSync(file!, 'utf8');
        // One trailing newline is the file's or the pipe's, not the password's.
        return raw.replace(/\r?\n$/, '');
      },
    };
    const out = await command.run(cliEnv, parsed.data as never);
    io.stdout(json ? JSON.stringify(out.json) : out.text);
    return 0;
  } catch (err) {
    const e = isGatehouseError(err) ? err : new GatehouseError('internal_error', String(err));
    if (json) io.stdout(JSON.stringify(e.toJSON()));
    io.stderr(
      `error: ${e.code}: ${e.message}${e.detail === undefined ? '' : `\n  detail: ${JSON.stringify(e.detail)}`}`,
    );
    return 1;
  } finally {
    await state?.db.destroy();
  }
};

// Run when executed (not when imported by a test).
if (import.meta.main) {
  const code = await main(process.argv.slice(2), {
    stdout: (s) => process.stdout.write(`${s}\n`),
    stderr: (s) => process.stderr.write(`${s}\n`),
    readStdin: readAll,
  });
  process.exitCode = code;
}
