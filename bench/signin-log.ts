/**
 * What a durable sign-in log costs: each sign-in awaits the commit of its row (group commit,
 * apps/cloud/src/signin/log.ts). For SQLite (synchronous=NORMAL, the default, and FULL) and, when a
 * server runs, PostgreSQL: the wait a sign-in pays, rows per INSERT and this process's CPU per row,
 * with 1 and 16 sign-ins in flight. `npx node bench/signin-log.ts [ROWS]`
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import { type Db, openDb } from '../apps/cloud/src/db/index.ts';
import { createSignInLog, type SignInRow } from '../apps/cloud/src/signin/log.ts';
import { createTempDatabase } from '../test/harness/postgres.ts';

const rows = Number(process.argv[2] ?? 4000);

const row = (i: number): SignInRow => ({
  tenant_id: 'bench',
  at: Date.now(),
  request_id: `r-${i}-${Math.random()}`,
  upn: `u${i % 1000}@bench.test`,
  user_id: `user-${i % 1000}`,
  method: 'password_grant',
  outcome: 'success',
  client_id: 'client',
  client_ip: '192.0.2.1',
  agent_id: 'agent-1',
  server: 'ldap://127.0.0.1:389',
  directory_code: null,
  agent_ms: 3.2,
  directory_ms: 2.1,
  total_ms: 4.5,
});

/** The real database with its INSERT statements counted. */
const counted = (db: Db) => {
  const c = { inserts: 0 };
  const proxy = new Proxy(db, {
    get: (t, p, r) =>
      p === 'insertInto'
        ? (table: 'signins') => {
            c.inserts++;
            return t.insertInto(table);
          }
        : Reflect.get(t, p, r),
  });
  return { db: proxy, c };
};

const run = async (label: string, db: Db, inFlight: number) => {
  const { db: spy, c } = counted(db);
  const log = createSignInLog(spy);
  let next = 0;
  let waited = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < rows) {
        const i = next++;
        const t = performance.now();
        await log.write(row(i));
        waited += performance.now() - t;
      }
    }),
  );
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(
    `${label.padEnd(26)} in flight ${String(inFlight).padStart(2)}: wait ${((waited / rows) * 1000).toFixed(0).padStart(5)} µs/sign-in, ` +
      `${(rows / c.inserts).toFixed(1).padStart(5)} rows/INSERT, CPU ${(((cpu.user + cpu.system) / rows) | 0).toString().padStart(4)} µs/row, ` +
      `${Math.round(rows / (wall / 1000))} rows/s\n`,
  );
};

const dir = mkdtempSync(join(tmpdir(), 'gh-bench-log-'));
try {
  for (const sync of ['NORMAL', 'FULL']) {
    const { db } = await openDb(`sqlite:${join(dir, `log-${sync}.db`)}`);
    await sql.raw(`PRAGMA synchronous = ${sync}`).execute(db);
    for (const n of [1, 16]) await run(`SQLite synchronous=${sync}`, db, n);
    await db.destroy();
  }
  const pg = await createTempDatabase();
  if (pg) {
    const { db } = await openDb(pg.url);
    for (const n of [1, 16]) await run('PostgreSQL', db, n);
    await db.destroy();
    await pg.drop();
  } else process.stdout.write('PostgreSQL: not running here, skipped\n');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
