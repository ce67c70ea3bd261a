/**
 * The commands of docs/operations.md, as operations-doc.test.ts reads them, and the helpers its
 * checks share: a shell that runs a command as the doc writes it, and the tests of other files
 * that run a command elsewhere.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCommandLine } from '@gatehouse/protocol';
import type { program as agentProgram } from '../../agent/src/program.ts';
import type { program as cloudProgram } from '../src/cli.ts';

export const ROOT = join(import.meta.dirname, '../../..');
export const DOC = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
export const CLI = join(ROOT, 'apps/cloud/src/cli.ts');
export const read = (...p: string[]) => readFileSync(join(ROOT, ...p), 'utf8');

export interface DocCommand {
  line: string;
  kind: 'sh' | 'transcript' | 'inline';
  /** The `<!-- e2e-backup: NAME -->` marker above the block, if any. */
  block?: string;
  /** A transcript's lines under its `$ ` line. */
  output?: string[];
}

export const SHELLS = new Set(['sh', 'bash', 'shell', 'console']);
export const INLINE =
  /^(sudo )?(gatehouse|gatehouse-agent|sed|openssl|curl|docker|podman|systemctl|systemd-analyze|pg_dump|pg_restore|node|npx|npm) \S/;

/** The commands of the doc, in its order. */
export const docCommands = (): DocCommand[] => {
  const out: DocCommand[] = [];
  const parts = DOC.split(/^(```\w*\n[\s\S]*?^```)$/m);
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const fence = /^```(\w*)\n([\s\S]*?)```$/.exec(part);
    if (!fence) {
      for (const [, span] of part.replace(/\n\s*/g, ' ').matchAll(/`([^`]+)`/g))
        if (INLINE.test(span!)) out.push({ line: span!, kind: 'inline' });
      continue;
    }
    const [, lang, body] = fence;
    const block = /<!-- e2e-backup: (\S+) -->\n$/.exec(parts[i - 1] ?? '')?.[1];
    if (SHELLS.has(lang!)) {
      for (const l of body!.replace(/\\\n\s*/g, ' ').split('\n'))
        if (l.trim()) out.push({ line: l.replace(/\s+# .*$/, '').trim(), kind: 'sh', block });
    } else if (lang === '') {
      const lines = body!.trimEnd().split('\n');
      lines.forEach((l, j) => {
        if (!l.startsWith('$ ')) return;
        const next = lines.findIndex((n, k) => k > j && n.startsWith('$ '));
        out.push({
          line: l.slice(2),
          kind: 'transcript',
          output: lines.slice(j + 1, next < 0 ? undefined : next),
        });
      });
    }
  }
  return out;
};

/** Shell words, quotes removed (what the doc's commands use: no escapes inside quotes). */
export const words = (line: string) =>
  [...line.matchAll(/"[^"]*"|'[^']*'|\S+/g)].map((m) => m[0].replace(/^["']|["']$/g, ''));
export const flagsOf = (line: string) =>
  words(line)
    .filter((w) => /^--?[a-z]/.test(w))
    .map((w) => w.split('=')[0]!);

export const sh = (script: string, opts: { cwd?: string; env?: Record<string, string> } = {}) =>
  new Promise<{ code: number; out: string; err: string }>((resolve) => {
    execFile(
      'bash',
      ['-c', `set -euo pipefail\ngatehouse() { "${process.execPath}" "${CLI}" "$@"; }\n${script}`],
      { cwd: opts.cwd ?? ROOT, env: { PATH: process.env.PATH, ...opts.env }, timeout: 60_000 },
      (err, out, errOut) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out, err: errOut }),
    );
  });

export const unit = () => read('deploy/systemd/gatehouse-cloud.service');
export const containerfile = () => read('deploy/container/Containerfile').replace(/\\\n/g, ' ');
/** How test/e2e-backup.test.ts names the doc's blocks it runs, for both engines. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: the test's source text, not a template.
export const ENGINE_BLOCKS = ['`${engine}-backup`', '`${engine}-restore`'];
/** A test that runs the command elsewhere must still be there, and still say what it runs. */
export const elsewhere = (file: string, ...needles: string[]) => {
  const text = read(file);
  for (const n of needles) assert.ok(text.includes(n), `${file} still has ${JSON.stringify(n)}`);
};
export const dockerAccepts = (sub: string, line: string) => {
  const help = spawnSync('docker', [sub, '--help'], { encoding: 'utf8' });
  if (help.error) return false;
  for (const f of flagsOf(line))
    assert.match(help.stdout, new RegExp(`(^|\\s|, )${f}[ ,]`), `docker ${sub} takes ${f}`);
  return true;
};
export const parses = (p: typeof cloudProgram | typeof agentProgram, line: string) => {
  const r = parseCommandLine(p as typeof cloudProgram, words(line).slice(1));
  assert.ok(['run', 'help', 'version'].includes(r.kind), `${line}: ${JSON.stringify(r)}`);
};
export const envOf = (text: string) =>
  Object.fromEntries(
    text.split('\n').flatMap((l) => (/^\w+=/.test(l) ? [l.split(/=(.*)/s).slice(0, 2)] : [])),
  );

/** Sign-in log rows around the doc's `from=1767225600000`: one before it, a success and a failure after. */
export const exportRows = (tenantId: string) =>
  (
    [
      [-1000, 'before@ops.example', 'success'],
      [1000, 'alice@ops.example', 'success'],
      [2000, 'bob@ops.example', 'invalid_credentials'],
    ] as const
  ).map(([d, upn, outcome]) => ({
    tenant_id: tenantId,
    at: 1767225600000 + d,
    request_id: `req-${d}`,
    upn,
    user_id: null,
    method: 'password_grant',
    outcome,
    client_id: 'c1',
    client_ip: '192.0.2.7',
    agent_id: null,
    server: null,
    directory_code: null,
    agent_ms: null,
    directory_ms: null,
    total_ms: 1,
  }));
