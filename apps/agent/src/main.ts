#!/usr/bin/env node
/**
 * gatehouse-agent <register|run|status|test-auth|sync> [flags]
 * Exit codes: 0 success, 1 failure (or unhealthy), 2 usage or configuration error; `run` also
 * 3 (the cloud refuses the certificate: deleted, replaced or expired) and 4 (protocol mismatch),
 * after which restarting the same agent cannot help.
 */
import { readFileSync } from 'node:fs';
import { formatIssues, GatehouseError, isGatehouseError, parseCommandLine } from '@gatehouse/protocol';
import pino from 'pino';
import { type AgentConfig, loadAgentConfig } from './config.ts';
import { collectDelta, readMark } from './delta.ts';
import { Directory, type UserRef } from './directory/index.ts';
import { program } from './program.ts';
import { isRegistered, readStatus } from './state.ts';
import { collectUsers, readLastSync } from './sync.ts';

interface Values {
  cloud?: string;
  'ca-file'?: string;
  token?: string;
  device?: boolean;
  tenant?: string;
  'state-dir'?: string;
  config?: string;
  json?: boolean;
  delta?: boolean;
}

const line = parseCommandLine(program, process.argv.slice(2));
const values: Values = line.kind === 'run' ? (line.values as Values) : {};
const positionals = line.kind === 'run' ? [line.name, ...line.positionals] : [];

const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);

const config = (): AgentConfig =>
  loadAgentConfig({
    configFile: values.config,
    overrides: values['state-dir'] ? { stateDir: values['state-dir'] } : {},
  });

const stateDir = () => values['state-dir'] ?? process.env.GATEHOUSE_AGENT_STATE_DIR ?? '.data/agent';

/** Reads a password without echo on a terminal; otherwise the first line of stdin. */
const readPassword = async (): Promise<string> => {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
  }
  process.stderr.write('Password: ');
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let pw = '';
    const onData = (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          return resolve(pw);
        }
        if (ch === '\u0003') {
          done();
          return reject(new Error('cancelled'));
        }
        if (ch === '\u007f' || ch === '\b') pw = pw.slice(0, -1);
        else pw += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
};

/** OpenLDAP: a DN as given, or the entry whose upn attribute or uid matches. AD: the UPN. */
const resolveUser = async (dir: Directory, name: string): Promise<UserRef | null> => {
  if (dir.cfg.kind === 'ad') return { dn: name, upn: name };
  if (/^[a-z][\w-]*=/i.test(name)) return { dn: name, upn: name };
  const esc = name.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  const attr = dir.cfg.upnAttribute ?? 'mail';
  for (const base of dir.cfg.baseDns) {
    const r = await dir.serviceOp((c) =>
      c.search(base, {
        scope: 'sub',
        filter: `(&${dir.cfg.userFilter}(|(${attr}=${esc})(uid=${esc})))`,
        attributes: ['1.1'],
      }),
    );
    if (r.searchEntries.length === 1) return { dn: r.searchEntries[0].dn, upn: name };
  }
  return null;
};

/** `sync --delta`: what a delta run would send now from the kept mark (which it does not move). */
const previewDelta = async (cfg: AgentConfig, dir: Directory): Promise<number> => {
  const known = readLastSync(cfg.stateDir).count;
  const d = await collectDelta(dir, cfg.sync.pageSize, readMark(cfg.stateDir), Date.now(), known);
  if (d.full !== undefined) {
    if (values.json) out(JSON.stringify({ mode: 'full', why: d.full }));
    else out(`a delta run is not possible now (${d.full}): the next run is full`);
    return 0;
  }
  const members = Object.fromEntries(d.groupMembers);
  if (values.json) out(JSON.stringify({ mode: 'delta', ...d, groupMembers: members }));
  else {
    for (const u of d.users)
      out(`changed  ${u.anchor}  ${u.upn}  ${u.enabled ? 'enabled ' : 'disabled'}  ${u.dn}`);
    for (const a of d.deleted) out(`deleted  ${a}`);
    for (const g of d.groups) out(`group    ${g.anchor}  ${g.name}  ${g.dn}`);
    for (const [g, list] of d.groupMembers) out(`members  ${g}  ${list.length} users at any depth`);
    out(
      `delta from ${d.server}: ${d.users.length} users changed, ${d.deleted.length} deleted, ${d.groups.length} groups changed, ${d.groupMembers.size} groups' members resent`,
    );
  }
  return 0;
};

const commands: Record<string, () => Promise<number>> = {
  async register() {
    const missing = [
      ...(values.cloud ? [] : [{ path: '--cloud', message: 'is required' }]),
      ...(values['ca-file'] ? [] : [{ path: '--ca-file', message: 'is required' }]),
      ...(values.token || (values.device && values.tenant)
        ? []
        : [{ path: '--token', message: 'give --token, or --device with --tenant' }]),
    ];
    if (missing.length > 0) throw new GatehouseError('validation_failed', missing);
    const { register } = await import('./register.ts');
    const r = await register({
      cloud: values.cloud!,
      caPem: readFileSync(values['ca-file']!, 'utf8'),
      stateDir: stateDir(),
      token: values.token,
      tenantId: values.device ? values.tenant : undefined,
      proxy: process.env.GATEHOUSE_AGENT_PROXY,
    });
    out(`registered: agent ${r.agentId} in tenant ${r.tenantId}; state in ${stateDir()}`);
    return 0;
  },

  async run() {
    const cfg = config();
    const log = pino({ level: cfg.logLevel, base: { pid: process.pid } });
    const ac = new AbortController();
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => ac.abort());
    const { runAgent } = await import('./agent.ts');
    const outcome = await runAgent({ config: cfg, log, signal: ac.signal });
    if (outcome.kind === 'stopped') return 0;
    log.flush();
    const { refusalExitCode } = await import('./channel/refusal.ts');
    const { refusal } = outcome;
    err(`${refusal.code}: ${refusal.message}`);
    err(JSON.stringify(refusal.detail, null, 2));
    return refusalExitCode(refusal) ?? 1;
  },

  async status() {
    const dir = stateDir();
    const report: Record<string, unknown> = { registered: isRegistered(dir) };
    const s = readStatus(dir);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const fresh = !!s?.heartbeatMs && Date.now() - s.updatedAt < 3 * s.heartbeatMs && alive(s.pid);
    Object.assign(report, { connected: !!s?.connected && fresh, fresh, status: s });
    let directory: unknown;
    try {
      const d = new Directory(config().directory, { backgroundProbe: false });
      directory = await d.probe();
      await d.close();
    } catch (e) {
      directory = {
        ok: false,
        error: isGatehouseError(e) ? JSON.stringify(e.toJSON()) : (e as Error).message,
      };
    }
    report.directory = directory;
    const ok =
      report.registered === true && report.connected === true && (directory as { ok?: boolean }).ok === true;
    if (values.json) out(JSON.stringify({ ok, ...report }));
    else {
      out(`registered: ${report.registered ? 'yes' : 'no'}`);
      out(
        `connected:  ${report.connected ? 'yes' : 'no'}${s?.lastHeartbeatAt ? ` (last heartbeat ${new Date(s.lastHeartbeatAt).toISOString()})` : ''}`,
      );
      out(`directory:  ${JSON.stringify(directory)}`);
      out(ok ? 'healthy' : 'NOT healthy');
    }
    return ok ? 0 : 1;
  },

  async 'test-auth'() {
    const name = positionals[1]!;
    const dir = new Directory(config().directory, { backgroundProbe: false });
    try {
      const user = await resolveUser(dir, name);
      const password = await readPassword();
      const t0 = performance.now();
      // An unknown user is answered like a wrong password, as the run path would.
      const r = user
        ? await dir.validate(user, password)
        : {
            outcome: 'invalid_credentials' as const,
            directoryCode: 'no-such-user',
            directoryMs: 0,
            server: undefined,
          };
      const result = { user: name, ...r, agentMs: Math.round((performance.now() - t0) * 100) / 100 };
      if (values.json) out(JSON.stringify(result));
      else
        out(
          `${result.outcome} (directory code ${result.directoryCode}, server ${result.server ?? '-'}, directory ${result.directoryMs.toFixed(1)} ms, agent ${result.agentMs} ms)`,
        );
      return r.outcome === 'success' ? 0 : 1;
    } finally {
      await dir.close();
    }
  },

  async sync() {
    const cfg = config();
    const dir = new Directory(cfg.directory, { backgroundProbe: false });
    try {
      if (values.delta) return await previewDelta(cfg, dir);
      const r = await collectUsers(dir, cfg.sync.pageSize);
      if (values.json) out(JSON.stringify(r));
      else {
        for (const u of r.users)
          out(`${u.anchor}  ${u.upn}  ${u.enabled ? 'enabled ' : 'disabled'}  ${u.dn}`);
        out(`${r.users.length} users from ${r.server} (${r.skipped} entries skipped: no anchor or UPN)`);
      }
      return 0;
    } finally {
      await dir.close();
    }
  },
};

if (line.kind !== 'run') {
  if (line.kind === 'usage') {
    const e = new GatehouseError('validation_failed', line.issues);
    err(`${e.code}: ${e.message}\n${formatIssues(line.issues)}\n\n${line.help}`);
  } else out(line.text);
  process.exit(line.kind === 'usage' ? 2 : 0);
}
try {
  process.exitCode = await commands[line.name]!();
} catch (e) {
  if (isGatehouseError(e)) {
    err(`${e.code}: ${e.message}`);
    if (e.detail !== undefined) err(JSON.stringify(e.detail, null, 2));
    if (e.code === 'validation_failed' && line.kind === 'run') err(`\n${line.help}`);
    process.exitCode = e.code === 'config_invalid' || e.code === 'validation_failed' ? 2 : 1;
  } else {
    err(`error: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
