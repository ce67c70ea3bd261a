/**
 * The whole check, as CI runs it (`npm test`): system packages, typecheck, lint, layer boundaries,
 * unit tests, integration tests, end-to-end tests. Stops at the first failing step and exits
 * non-zero.
 *
 *   npm test                      every step
 *   npm test -- unit e2e          only the named steps (system, typecheck, lint, boundaries, unit,
 *                                 integration, e2e)
 *
 * Unit and integration tests live side by side in the test/ folder of each package and app. A
 * test file that needs a service for any of its tests (slapd, Samba, PostgreSQL, nats-server,
 * Chromium) is named `*.int.test.ts` and runs in `integration`; every other `*.test.ts` there runs
 * in `unit`, which needs none of them (`npm test -- unit` passes with no service running).
 */
import { spawn } from 'node:child_process';
import { globSync } from 'node:fs';
import { join } from 'node:path';
import { ensureSystem } from './ensure-system.ts';

const root = join(import.meta.dirname, '..');
const bin = (name: string) => join(root, 'node_modules', '.bin', name);
const node = process.execPath;

const run = (cmd: string, args: string[]): Promise<number> =>
  new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: 'inherit' });
    child.once('error', (err) => {
      process.stderr.write(`test: cannot run ${cmd}: ${err.message}\n`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });

const files = (...patterns: string[]) => patterns.flatMap((p) => globSync(p, { cwd: root })).sort();

const INTEGRATION = /\.int\.test\.ts$/;

const nodeTest =
  (patterns: string[], timeoutMs: number, keep: (file: string) => boolean = () => true) =>
  async () => {
    const found = files(...patterns).filter(keep);
    if (found.length === 0) {
      process.stderr.write(`test: no test files match ${patterns.join(' ')}\n`);
      return 1;
    }
    return run(node, ['--test', '--test-concurrency=1', `--test-timeout=${timeoutMs}`, ...found]);
  };

const TESTS = ['packages/*/test/*.test.ts', 'apps/*/test/*.test.ts'];

const steps: ReadonlyArray<{ name: string; title: string; run: () => Promise<number> }> = [
  { name: 'system', title: 'system packages and services', run: () => ensureSystem() },
  { name: 'typecheck', title: 'tsc --noEmit', run: () => run(bin('tsc'), ['--noEmit', '-p', root]) },
  { name: 'lint', title: 'biome check .', run: () => run(bin('biome'), ['check', '.']) },
  {
    name: 'boundaries',
    title: 'layers and imports (.dependency-cruiser.mjs)',
    run: () => run(bin('depcruise'), ['apps', 'packages', '--config', '.dependency-cruiser.mjs']),
  },
  {
    name: 'unit',
    title: 'unit tests (packages/*/test, apps/*/test; no services)',
    run: nodeTest(TESTS, 120_000, (f) => !INTEGRATION.test(f)),
  },
  {
    name: 'integration',
    title: 'integration tests (*.int.test.ts: slapd, Samba, PostgreSQL, NATS, Chromium)',
    run: nodeTest(TESTS, 120_000, (f) => INTEGRATION.test(f)),
  },
  { name: 'e2e', title: 'end-to-end tests (test/*.test.ts)', run: nodeTest(['test/*.test.ts'], 300_000) },
];

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !steps.some((s) => s.name === w));
if (unknown.length) {
  process.stderr.write(
    `test: unknown step ${unknown.join(', ')}; steps are ${steps.map((s) => s.name).join(', ')}\n`,
  );
  process.exit(2);
}

const started = Date.now();
for (const step of steps) {
  if (wanted.length && !wanted.includes(step.name)) continue;
  process.stdout.write(`\n=== ${step.name}: ${step.title}\n`);
  const t0 = Date.now();
  const code = await step.run();
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (code !== 0) {
    process.stdout.write(`\n=== ${step.name}: FAILED (exit ${code}, ${secs} s)\n`);
    process.exit(code);
  }
  process.stdout.write(`=== ${step.name}: ok (${secs} s)\n`);
}
process.stdout.write(`\n=== all steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
