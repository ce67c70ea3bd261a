/**
 * The data layer's rule, checked on the source: SQL is written only in src/store/ (one owner
 * module per table) and src/db/ (Kysely setup, schema, migrations, backup). A query builder call,
 * an sql`` template or a transaction anywhere else fails here, and so does a table written to by
 * two store modules, or by none. docs/architecture.md ("## Data layer") lists the same owners.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname, '..');
const src = join(root, 'src');
const rel = (file: string) => relative(src, file).replaceAll('\\', '/');

const sourceFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });

/**
 * Blanks comments (keeping line breaks) so prose naming a builder method is not a query. A small
 * scanner rather than a regex: strings such as '/:tenantId/v2.0/*' must not open a comment.
 */
const stripComments = (code: string): string => {
  let out = '';
  let quote: string | null = null;
  for (let i = 0; i < code.length; i++) {
    const c = code[i]!;
    if (quote) {
      out += c;
      if (c === '\\') out += code[++i] ?? '';
      else if (c === quote) quote = null;
      continue;
    }
    if (c === "'" || c === '"' || c === '`') quote = c;
    else if (c === '/' && (code[i + 1] === '/' || code[i + 1] === '*')) {
      const end = code[i + 1] === '/' ? code.indexOf('\n', i) : code.indexOf('*/', i + 2) + 2;
      const stop = end <= 1 || end === -1 ? code.length : end;
      out += code.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop - 1;
      continue;
    }
    out += c;
  }
  return out;
};

const SQL_PATTERNS: [RegExp, string][] = [
  [
    /\.(selectFrom|selectNoFrom|insertInto|replaceInto|updateTable|deleteFrom|mergeInto|transaction|getExecutor|executeQuery)\(/,
    'query builder call',
  ],
  [/\bsql(<[^>]*>)?`/, 'sql`` template'],
  [/\bsql\.(raw|ref|id|lit|table|join|val)\(/, 'sql helper'],
];

/** Every place in `code` that writes SQL, as "line: what: source". */
export const sqlFindings = (code: string): string[] => {
  const bare = stripComments(code);
  const found: string[] = [];
  bare.split('\n').forEach((line, i) => {
    for (const [re, what] of SQL_PATTERNS) if (re.test(line)) found.push(`${i + 1}: ${what}: ${line.trim()}`);
  });
  // Type imports (Kysely, Selectable...) are fine anywhere; values (sql, the builder) belong below store/.
  for (const m of bare.matchAll(/^import\s+(type\s+)?([^;]*?)\s+from\s+'kysely'/gm)) {
    if (m[1]) continue;
    const names = m[2]!
      .replace(/[{}]/g, '')
      .split(',')
      .map((n) => n.trim());
    const values = names.filter((n) => n !== '' && !n.startsWith('type '));
    const line = bare.slice(0, m.index).split('\n').length;
    if (values.length > 0) found.push(`${line}: value import from 'kysely': ${values.join(', ')}`);
  }
  return found;
};

const inDataLayer = (file: string) => /^(store|db)\//.test(rel(file));

test('no SQL outside src/store/ and src/db/', () => {
  const offenders = sourceFiles(src)
    .filter((f) => !inDataLayer(f))
    .flatMap((f) => sqlFindings(readFileSync(f, 'utf8')).map((x) => `${rel(f)}:${x}`));
  assert.deepEqual(offenders, [], 'move these queries into the store module that owns the table');
});

test('the scan finds SQL a route might add', () => {
  const route = [
    "import { type Kysely, sql } from 'kysely';",
    'const n = await ctx.db.selectFrom("users").selectAll().execute();',
    "await tx\n  .updateTable('tenants')",
    'await sql`select 1`.execute(db);',
    'await db.transaction().execute(async (tx) => {});',
    '// .deleteFrom( in a comment is prose',
    "app.all('/:tenantId/v2.0/*', h); // a string opens no comment",
    'await db.deleteFrom("audit").execute(); /* .insertInto( */',
  ].join('\n');
  assert.equal(sqlFindings(route).length, 6);
  assert.deepEqual(
    sqlFindings("import type { Kysely } from 'kysely';\nimport { type Selectable } from 'kysely';"),
    [],
  );
});

/** Tables of the Database interface in db/schema.ts. */
const tables = (): string[] => {
  const schema = readFileSync(join(src, 'db/schema.ts'), 'utf8');
  const body = /export interface Database \{([^}]*)\}/.exec(schema)?.[1];
  assert.ok(body, 'db/schema.ts declares interface Database');
  return [...body.matchAll(/^\s*(\w+):/gm)].map((m) => m[1]!);
};

/**
 * Files below src/ that may write tables they do not own. Migrations rewrite rows while they
 * change a table's shape (sealing payloads, converting metadata); they run before any owner does.
 */
const WRITE_EXCEPTIONS = new Set(['db/migrations.ts']);

const WRITE = /\.(insertInto|updateTable|deleteFrom|replaceInto|mergeInto)\(\s*([^)]*)\)/g;

/** Table -> the store modules writing to it. */
const writers = (): Map<string, Set<string>> => {
  const map = new Map<string, Set<string>>();
  for (const f of sourceFiles(src).filter(inDataLayer)) {
    if (WRITE_EXCEPTIONS.has(rel(f))) continue;
    for (const m of stripComments(readFileSync(f, 'utf8')).matchAll(WRITE)) {
      const table = /^'(\w+)(?: as \w+)?'$/.exec(m[2]!.trim())?.[1];
      assert.ok(table, `${rel(f)} writes a table named by an expression (${m[0]}): name it literally`);
      if (!map.has(table)) map.set(table, new Set());
      map.get(table)!.add(rel(f));
    }
  }
  return map;
};

test('each table is written by exactly one store module', () => {
  const all = tables();
  const w = writers();
  const problems: string[] = [];
  for (const t of all) {
    const owners = [...(w.get(t) ?? [])];
    if (owners.length !== 1)
      problems.push(`${t}: written by ${owners.length ? owners.join(', ') : 'no module'}`);
    else if (!owners[0]!.startsWith('store/'))
      problems.push(`${t}: written by ${owners[0]}, not a store module`);
  }
  for (const t of w.keys()) if (!all.includes(t)) problems.push(`${t}: written but not in db/schema.ts`);
  assert.deepEqual(problems, []);
});

test('docs/architecture.md lists each table with its owner', () => {
  const doc = readFileSync(join(root, '../../docs/architecture.md'), 'utf8');
  const section = /^## Data layer\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(doc)?.[1];
  assert.ok(section, 'docs/architecture.md has a "## Data layer" section');
  const listed = new Map<string, string>();
  for (const m of section.matchAll(/^- `store\/([\w-]+\.ts)`: (.+)$/gm))
    for (const t of m[2]!.matchAll(/`(\w+)`/g)) listed.set(t[1]!, `store/${m[1]}`);
  const actual = new Map([...writers()].map(([t, owners]) => [t, [...owners][0]!]));
  assert.deepEqual(Object.fromEntries([...listed].sort()), Object.fromEntries([...actual].sort()));
});
