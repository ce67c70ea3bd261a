/**
 * The command-line grammar both `gatehouse` and `gatehouse-agent` share: a table of commands, each
 * with the flags that parse it. Help is printed from that same table, so the help and the parser
 * cannot disagree, and every usage mistake is a `validation_failed` detail with a hint rather than
 * node's raw ERR_PARSE_ARGS_* error.
 */
import { parseArgs } from 'node:util';

export interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
}

export interface CliCommand {
  /** Synopsis after the command's name, e.g. `--tenant T [--limit N]`. */
  usage: string;
  /** One line for the overview and the group help. */
  summary?: string;
  options: Record<string, FlagSpec>;
  /** Positional arguments it takes, e.g. `['USER']` (default none). */
  positionals?: string[];
}

export interface CliProgram<C extends CliCommand> {
  name: string;
  version: string;
  commands: Record<string, C>;
  /** Flags every command takes (e.g. --json), with what they do. */
  common: Record<string, FlagSpec & { help: string }>;
  /** Whether a flag is required and its default, when the program knows (e.g. from a schema). */
  describeFlag?: (command: C, flag: string) => { required: boolean; default?: unknown };
  /** Printed under the overview. */
  footer?: string;
}

export interface UsageIssue {
  path: string;
  message: string;
  hint?: string;
}

export type CommandLine<C extends CliCommand> =
  | { kind: 'help'; text: string }
  | { kind: 'version'; text: string }
  | { kind: 'usage'; issues: UsageIssue[]; help: string }
  | {
      kind: 'run';
      name: string;
      command: C;
      values: Record<string, unknown>;
      positionals: string[];
      help: string;
    };

const HELP = new Set(['--help', '-h']);
const VERSION = new Set(['--version', '-V']);

/** Edit distance, for "did you mean". */
const distance = (a: string, b: string): number => {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
};

/** The candidate closest to `word`: a prefix match first, then the smallest edit distance. */
export const closest = (word: string, candidates: string[]): string | undefined => {
  const w = word.toLowerCase();
  const prefixed = candidates.filter((c) => c.startsWith(w) || w.startsWith(c));
  if (prefixed.length > 0)
    return prefixed.sort((a, b) => Math.abs(a.length - w.length) - Math.abs(b.length - w.length))[0];
  const scored = candidates
    .map((c) => ({ c, d: distance(w, c) }))
    .filter(({ c, d }) => d <= Math.max(2, Math.floor(c.length / 3)))
    .sort((a, b) => a.d - b.d);
  return scored[0]?.c;
};

const flagLine = (name: string, spec: FlagSpec, placeholder: string | undefined, note: string) => {
  const left = `  --${name}${spec.type === 'string' ? ` ${placeholder ?? 'VALUE'}` : ''}${spec.short ? `, -${spec.short}` : ''}`;
  return note ? `${left.padEnd(34)} ${note}` : left;
};

/** The placeholder the synopsis gives a flag (`--tenant T` gives T). */
const placeholders = (usage: string): Map<string, string> =>
  new Map([...usage.matchAll(/--([a-z][\w-]*) ([A-Za-z][\w|.:/-]*)/g)].map((m) => [m[1]!, m[2]!]));

/** `name --help`: the synopsis and every flag the parser accepts, from the same table. */
export const commandHelp = <C extends CliCommand>(p: CliProgram<C>, name: string, c: C): string => {
  const ph = placeholders(c.usage);
  const lines = Object.entries(c.options).map(([flag, spec]) => {
    const d = p.describeFlag?.(c, flag);
    const notes = [
      d?.required ? 'required' : '',
      spec.multiple ? 'repeatable' : '',
      d?.default !== undefined && d.default !== false ? `default ${JSON.stringify(d.default)}` : '',
    ].filter(Boolean);
    return flagLine(flag, spec, ph.get(flag), notes.join(', '));
  });
  const common = Object.entries(p.common).map(([flag, spec]) => flagLine(flag, spec, undefined, spec.help));
  return [
    `usage: ${p.name} ${name}${c.usage ? ` ${c.usage}` : ''}`,
    ...(c.summary ? ['', c.summary] : []),
    '',
    'flags:',
    ...(lines.length ? lines : ['  (none of its own)']),
    ...common,
    flagLine('help', { type: 'boolean', short: 'h' }, undefined, 'this text'),
  ].join('\n');
};

const listing = <C extends CliCommand>(p: CliProgram<C>, names: string[]) =>
  names.map((n) => `  ${p.name} ${n}${p.commands[n]!.summary ? `\n      ${p.commands[n]!.summary}` : ''}`);

/** The overview: every command with its summary. */
export const overview = <C extends CliCommand>(p: CliProgram<C>): string =>
  [
    `usage: ${p.name} <command> [flags]    (${p.name} <command> --help for its flags)`,
    '',
    ...listing(p, Object.keys(p.commands)),
    '',
    `${p.name} --version prints the version.`,
    ...(p.footer ? [p.footer] : []),
  ].join('\n');

const groupHelp = <C extends CliCommand>(p: CliProgram<C>, group: string): string =>
  [
    `usage: ${p.name} ${group} <${members(p, group)
      .map((n) => n.slice(group.length + 1))
      .join('|')}> [flags]`,
    '',
    ...listing(p, members(p, group)),
  ].join('\n');

const members = <C extends CliCommand>(p: CliProgram<C>, group: string) =>
  Object.keys(p.commands).filter((n) => n.startsWith(`${group} `));

const unknownCommand = <C extends CliCommand>(p: CliProgram<C>, words: string[]): CommandLine<C> => {
  const group = members(p, words[0]!).length > 0 ? words[0]! : undefined;
  const name = words.slice(0, group ? 2 : 1).join(' ');
  const candidates = group
    ? members(p, group)
    : [...new Set(Object.keys(p.commands).map((n) => n.split(' ')[0]!))];
  const hint = group && !words[1] ? undefined : closest(name, candidates);
  return {
    kind: 'usage',
    issues: [
      {
        path: '(command)',
        message: group && !words[1] ? `"${group}" needs a subcommand` : `unknown command "${name}"`,
        hint: hint
          ? `did you mean "${p.name} ${hint}"?`
          : `see ${p.name} ${group ?? ''} --help`.replace('  ', ' '),
      },
    ],
    help: group ? groupHelp(p, group) : overview(p),
  };
};

/** The issue node:util's parser reports, in words a user can act on. */
const parserIssue = (err: unknown, name: string): UsageIssue => {
  const msg = (err as Error).message.split('\n')[0]!;
  const opt = /'(-[^' ]+)/.exec(msg)?.[1] ?? '(flags)';
  const code = (err as { code?: string }).code;
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
    return {
      path: '(arguments)',
      message: msg.replace(/\. This command.*/, ''),
      hint: `flags start with --; see ${name} --help`,
    };
  if (/argument missing|ambiguous/.test(msg))
    return {
      path: opt,
      message: 'needs a value',
      hint: `write ${opt} VALUE (or ${opt}=VALUE for a value starting with -)`,
    };
  if (/does not take an argument/.test(msg))
    return { path: opt, message: 'takes no value', hint: `write ${opt} alone` };
  return { path: opt, message: msg };
};

/** Reads argv against the program's table: help, version, a usage issue, or a command to run. */
export const parseCommandLine = <C extends CliCommand>(p: CliProgram<C>, argv: string[]): CommandLine<C> => {
  const first = argv[0];
  if (first === undefined)
    return { kind: 'usage', issues: [{ path: '(command)', message: 'no command given' }], help: overview(p) };
  if (HELP.has(first) || first === 'help') return { kind: 'help', text: overview(p) };
  if (VERSION.has(first) || first === 'version') return { kind: 'version', text: `${p.name} ${p.version}` };
  const two = argv.slice(0, 2).join(' ');
  const name = p.commands[first] ? first : p.commands[two] ? two : undefined;
  if (!name) {
    if (members(p, first).length > 0 && argv.slice(1).some((a) => HELP.has(a) || a === 'help'))
      return { kind: 'help', text: groupHelp(p, first) };
    return unknownCommand(p, argv);
  }
  const command = p.commands[name]!;
  const rest = argv.slice(name.split(' ').length);
  const help = commandHelp(p, name, command);
  if (rest.some((a) => HELP.has(a))) return { kind: 'help', text: help };
  if (rest.some((a) => VERSION.has(a))) return { kind: 'version', text: `${p.name} ${p.version}` };

  const options = {
    ...command.options,
    ...Object.fromEntries(Object.entries(p.common).map(([k, { help: _, ...spec }]) => [k, spec])),
  };
  const known = Object.keys(options);
  const { tokens } = parseArgs({ args: rest, options, strict: false, allowPositionals: true, tokens: true });
  const unknown = tokens.flatMap((t) =>
    t.kind === 'option' && !Object.hasOwn(options, t.name)
      ? [
          {
            path: t.rawName,
            message: 'unknown flag',
            hint: ((h) => (h ? `did you mean --${h}?` : `see ${p.name} ${name} --help`))(
              closest(t.name, known),
            ),
          },
        ]
      : [],
  );
  if (unknown.length > 0) return { kind: 'usage', issues: unknown, help };
  const positionals = tokens.flatMap((t) => (t.kind === 'positional' ? [t.value] : []));
  const allowed = command.positionals ?? [];
  try {
    const parsed = parseArgs({ args: rest, options, strict: true, allowPositionals: allowed.length > 0 });
    if (positionals.length !== allowed.length && allowed.length > 0)
      return {
        kind: 'usage',
        issues: [
          {
            path: '(arguments)',
            message: `takes ${allowed.join(' ')}`,
            hint: `${p.name} ${name} ${command.usage}`,
          },
        ],
        help,
      };
    return { kind: 'run', name, command, values: parsed.values, positionals: parsed.positionals, help };
  } catch (err) {
    return { kind: 'usage', issues: [parserIssue(err, `${p.name} ${name}`)], help };
  }
};

/** The lines a usage error prints under `error: validation_failed: ...`. */
export const formatIssues = (issues: UsageIssue[]): string =>
  issues.map((i) => `  ${i.path}: ${i.message}${i.hint ? `\n  hint: ${i.hint}` : ''}`).join('\n');
