/**
 * Hot-path queries built once. Kysely builds and compiles a query on every call (its operation
 * tree, then the SQL text): ~15-40 us per statement on the sign-in path, which runs ten of them.
 * A prepared query is built once per dialect with a marker standing in for each parameter, and
 * each call only substitutes the values into the compiled parameter list and executes it through
 * the same Kysely executor (so transactions, the SQLite driver's connection mutex and the query
 * metrics are unchanged; sqlite.ts caches the native statement by its SQL text).
 *
 * Kysely has no prepared-statement API of its own (its recipe for "splitting build, compile and
 * execute" compiles with fixed values), hence this small layer.
 */
import type { Compilable, CompiledQuery, Kysely, QueryResult } from 'kysely';

const MARK = '\u0000gatehouse-param:';

type Slot = { name: string } | { value: unknown };

interface Plan {
  compiled: CompiledQuery;
  slots: Slot[];
}

export type Prepared<DB, P, R> = (db: Kysely<DB>, params: P) => Promise<QueryResult<R>>;

/**
 * `build` receives the database and, for each parameter name, a marker to use where the value
 * goes. It must use every marker as a plain value (a comparison, an inserted or set value): a
 * marker used to choose the shape of the query (an `if`, a list's length) would freeze that
 * choice, so a parameter the compiled query does not carry is an error when it is first built.
 */
export const prepare = <DB, P extends object, R>(
  build: (db: Kysely<DB>, p: P) => Compilable<R>,
): Prepared<DB, P, R> => {
  // Keyed by the dialect's adapter: a transaction shares its database's adapter, and the SQL text
  // differs only between dialects (placeholders, quoting).
  const plans = new WeakMap<object, Plan>();
  const plan = (db: Kysely<DB>): Plan => {
    const adapter = db.getExecutor().adapter;
    let found = plans.get(adapter);
    if (found) return found;
    const names = new Set<string>();
    const markers = new Proxy({} as P, {
      get: (_t, key) => {
        names.add(String(key));
        return `${MARK}${String(key)}`;
      },
    });
    const compiled = build(db, markers).compile();
    const slots = compiled.parameters.map(
      (v): Slot =>
        typeof v === 'string' && v.startsWith(MARK) ? { name: v.slice(MARK.length) } : { value: v },
    );
    for (const n of names)
      if (!slots.some((s) => 'name' in s && s.name === n))
        throw new Error(`prepared query: parameter ${n} does not reach the compiled query`);
    found = { compiled, slots };
    plans.set(adapter, found);
    return found;
  };
  return (db, params) => {
    const { compiled, slots } = plan(db);
    const values = params as Record<string, unknown>;
    const parameters = slots.map((s) => ('name' in s ? values[s.name] : s.value));
    return db.executeQuery<R>({ ...compiled, parameters } as CompiledQuery<R>);
  };
};
