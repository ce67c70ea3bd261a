/** What the operator CLI's commands share: their environment, flag types and output helpers. */
import { TenantId } from '@gatehouse/protocol';
import { z } from 'zod';
import type { StateInfo } from '../bootstrap.ts';
import type { CloudConfig } from '../config.ts';
import type { Db } from '../db/index.ts';
import type { SecretBox } from '../secrets.ts';

export interface CliEnv {
  config: CloudConfig;
  db: Db;
  secrets: SecretBox;
  /** What was opened: the database, where the key came from, whether it was set up now. */
  state: StateInfo;
  now: () => number;
  /** Reads a password from a file or stdin, without its trailing newline. */
  readPassword(file: string | undefined, stdin: boolean): Promise<string>;
}

export type Option = { type: 'string' | 'boolean'; multiple?: boolean };
export interface Command {
  usage: string;
  /** One line for `gatehouse --help` and the group's help. */
  summary?: string;
  /** First-time setup: may create the data directory, database and secret key. No other command
   * creates state; run elsewhere, they refuse and say where they looked. */
  createsState?: boolean;
  /** Works on files only (restore): no state is opened, and `run` gets only `config` and `now`. */
  withoutState?: boolean;
  options: Record<string, Option>;
  schema: z.ZodType;
  /** `exitCode`: a command that reports a state (sync status) exits non-zero when it is a problem. */
  run(env: CliEnv, args: never): Promise<{ json: unknown; text: string; exitCode?: number }>;
}

export const str: Option = { type: 'string' };
export const many: Option = { type: 'string', multiple: true };
export const flag: Option = { type: 'boolean' };
export const tenant = z.string({ error: 'is required' }).pipe(TenantId);
export const onOff = z.enum(['on', 'off']).transform((v) => v === 'on');
export const count = z.coerce.number().int().positive();
export const OPERATOR = 'operator';

/** Exactly one of a password file and stdin. */
export const passwordSource = <P extends string>(fileKey: P, stdinKey: string) => ({
  refine: (v: Record<string, unknown>) => (v[fileKey] === undefined) !== (v[stdinKey] !== true),
  message: `give exactly one of --${fileKey} and --${stdinKey}`,
});

export const command = <S extends z.ZodType>(c: {
  usage: string;
  summary?: string;
  createsState?: boolean;
  withoutState?: boolean;
  options: Record<string, Option>;
  schema: S;
  run(env: CliEnv, args: z.output<S>): Promise<{ json: unknown; text: string; exitCode?: number }>;
}): Command => c as unknown as Command;

export const table = (rows: Record<string, unknown>[], empty = '(none)'): string => {
  if (rows.length === 0) return empty;
  const keys = Object.keys(rows[0]!);
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : String(v));
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => cell(r[k]).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(keys), ...rows.map((r) => line(keys.map((k) => cell(r[k]))))].join('\n');
};
export const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
