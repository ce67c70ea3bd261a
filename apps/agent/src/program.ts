/** The agent's commands and flags: the one table `gatehouse-agent` parses with and prints help from. */
import type { CliCommand, CliProgram } from '@gatehouse/protocol';
import { VERSION } from './version.ts';

const S = { type: 'string' } as const;
const B = { type: 'boolean' } as const;
const local = { 'state-dir': S, config: S };

/** The one table the parser and every help text come from. */
const table = {
  register: {
    usage:
      '--cloud https://HOST:PORT --ca-file CA.pem (--token T | --device --tenant TENANT_ID) [--state-dir D]',
    summary:
      'registers this host with the cloud (a one-time token, or a device code an administrator approves)',
    options: { cloud: S, 'ca-file': S, token: S, device: B, tenant: S, 'state-dir': S },
  },
  run: {
    usage: '[--state-dir D] [--config FILE]',
    summary: 'connects to the cloud and serves sign-ins and sync (foreground; SIGTERM stops it)',
    options: local,
  },
  status: {
    usage: '[--state-dir D] [--config FILE] [--json]',
    summary: 'registration, connection and directory health; exits 1 when not healthy',
    options: { ...local, json: B },
  },
  'test-auth': {
    usage: 'USER [--state-dir D] [--config FILE] [--json]',
    summary: "checks USER's password (read from stdin, or asked without echo) against the directory",
    options: { ...local, json: B },
    positionals: ['USER'],
  },
  sync: {
    usage: '[--delta] [--state-dir D] [--config FILE] [--json]',
    summary:
      'reads the users a sync would send (--delta: what changed since the kept mark, or why the run would be full), and sends nothing',
    options: { ...local, json: B, delta: B },
  },
} satisfies Record<string, CliCommand>;

export const program: CliProgram<CliCommand> = {
  name: 'gatehouse-agent',
  version: VERSION,
  commands: table,
  common: {},
  describeFlag: (_c, flag) => ({ required: flag === 'cloud' || flag === 'ca-file' }),
};
