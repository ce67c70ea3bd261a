/**
 * `npm run bench -- --check`: the regression guard. The standard scenario's CPU per sign-in is
 * compared with the reference recorded in docs/benchmarks.md (the table under the heading
 * "Reference for `--check`"), scaled by the floor measured in the same run against the floor
 * recorded with the reference, so a slower or busier machine does not raise a false alarm:
 *
 *   limit = reference × (floor now / floor then) × tolerance
 *
 * Not part of the test suite: it takes a minute and needs the machine to itself.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const REFERENCE_HEADING = '### Reference for `--check`';
/** The report fields the guard compares, each per sign-in. */
export const CHECKED = ['cloud_cpu_ms_per_signin', 'agent_cpu_ms_per_signin'] as const;

export type Reference = Record<string, number>;

/** The `| name | value |` rows of the reference table (values may carry a unit: "1.21 ms"). */
export const parseReference = (markdown: string): Reference => {
  const lines = markdown.split('\n');
  const at = lines.findIndex((l) => l.trim() === REFERENCE_HEADING);
  if (at < 0) throw new Error(`docs/benchmarks.md has no "${REFERENCE_HEADING}" section`);
  const ref: Reference = {};
  for (const line of lines.slice(at + 1)) {
    if (line.startsWith('#')) break;
    const m = /^\|\s*`?([a-z_]+)`?\s*\|\s*([0-9.]+)/.exec(line);
    if (m) ref[m[1]!] = Number(m[2]);
  }
  if (!(ref.floor_cloud_cpu_ms! > 0)) throw new Error('the reference table has no floor_cloud_cpu_ms');
  return ref;
};

export const readReference = (root: string): Reference =>
  parseReference(readFileSync(join(root, 'docs', 'benchmarks.md'), 'utf8'));

export interface CheckLine {
  field: string;
  measured: number;
  reference: number;
  limit: number;
  ok: boolean;
}

export const check = (
  report: Record<string, unknown>,
  ref: Reference,
  tolerance: number,
): { ok: boolean; scale: number; lines: CheckLine[] } => {
  const floor = Number(report.floor_cloud_cpu_ms);
  if (!(floor > 0)) throw new Error('the report has no floor to normalise by');
  const scale = floor / ref.floor_cloud_cpu_ms!;
  const lines = CHECKED.filter((f) => ref[f] !== undefined).map((field) => {
    const measured = Number(report[field]);
    const reference = ref[field]!;
    const limit = Math.round(reference * scale * tolerance * 1000) / 1000;
    return { field, measured, reference, limit, ok: measured <= limit };
  });
  if (lines.length === 0) throw new Error('the reference table names no CPU per sign-in to check');
  return { ok: lines.every((l) => l.ok), scale: Math.round(scale * 1000) / 1000, lines };
};
