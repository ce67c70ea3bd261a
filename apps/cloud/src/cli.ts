#!/usr/bin/env node
/**
 * `gatehouse`: the service operator's command line. It opens the same state as the server (same
 * GATEHOUSE_CLOUD_* environment), so it works on a stopped or running embedded install alike.
 *
 * Exit status: 0 success, 2 bad usage, 1 a catalog error (or anything unexpected).
 */
import { readFileSync } from 'node:fs';
import {
  type CliProgram,
  formatIssues,
  GatehouseError,
  isGatehouseError,
  parseCommandLine,
  type UsageIssue,
} from '@gatehouse/protocol';
import type { z } from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { openState } from './bootstrap.ts';
import { type CliEnv, type Command, commands } from './cli/commands.ts';
import { loadCloudConfig } from './config.ts';

/** A flag is required when its schema refuses it missing; its default is what the schema fills in. */
const describeFlag = (c: Command, flag: string) => {
  const shape = (c.schema as unknown as { shape?: Record<string, z.ZodType> }).shape ?? {};
  const field = shape[flag];
  if (!field) return { required: false };
  const empty = field.safeParse(undefined);
  return { required: !empty.success, default: empty.success ? empty.data : undefined };
};

/** The one table both the parser and every help text come from. */
export const program: CliProgram<Command> = {
  name: 'gatehouse',
  version: pkg.version,
  commands,
  common: { json: { type: 'boolean', help: 'one JSON document on stdout' } },
  describeFlag,
  footer: `Passwords are read from a file or stdin, never from the command line (it would show in the
process list and shell history).`,
};

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

const usageError = (io: Io, json: boolean, issues: UsageIssue[], usage: string): number => {
  const err = new GatehouseError('validation_failed', issues);
  if (json) io.stdout(JSON.stringify(err.toJSON()));
  io.stderr(`error: ${err.code}: ${err.message}\n${formatIssues(issues)}\n\n${usage}`);
  return 2;
};

export const main = async (argv: string[], io: Io, env: NodeJS.ProcessEnv = process.env): Promise<number> => {
  const json = argv.includes('--json');
  const line = parseCommandLine(program, argv);
  if (line.kind === 'help' || line.kind === 'version') {
    io.stdout(line.text);
    return 0;
  }
  if (line.kind === 'usage') return usageError(io, json, line.issues, line.help);
  const { command, values, help: usage } = line;
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
    return out.exitCode ?? 0;
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
