/**
 * `npm run bench -- --growth`: the same sign-in run on a cloud whose database already holds what a
 * large installation has: 1,000 tenants, 100,000 users and 10 million sign-in log rows (sizes can be
 * changed with --growth-tenants, --growth-users, --growth-signins). The question it answers is
 * whether a sign-in costs more as the tables grow (every hot query is a keyed lookup, so it should
 * not, beyond the page cache).
 *
 * The rows are written straight into the cloud's SQLite file before the load starts, by SQLite
 * itself (a recursive CTE per table, in transactions of a million rows), so seeding 10 million rows
 * takes about a minute instead of hours through the API. The other tenants are copies of the bench
 * tenant's row under new ids: they exist, hold users and log rows, and never sign in.
 */
import { execFileSync } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';

export interface GrowthSize {
  tenants: number;
  users: number;
  signins: number;
}

const CHUNK = 1_000_000;

export const seedGrowth = (
  dbFile: string,
  tenantId: string,
  size: GrowthSize,
): { seconds: number; syncSeconds: number } => {
  const t0 = performance.now();
  const db = new DatabaseSync(dbFile);
  try {
    db.exec('PRAGMA busy_timeout = 10000');
    const columns = (db.prepare('PRAGMA table_info(tenants)').all() as Array<{ name: string }>).map(
      (c) => c.name,
    );
    const others = columns.filter((c) => c !== 'id' && c !== 'name');
    const extra = Math.max(0, size.tenants - 1);
    db.exec('BEGIN');
    db.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO tenants (id, name, ${others.join(', ')})
       SELECT 'grow-' || i, 'Growth ' || i, ${others.join(', ')} FROM n, tenants WHERE tenants.id = ?`,
    ).run(extra, tenantId);
    const perTenant = Math.ceil(size.users / Math.max(1, extra));
    db.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
       INSERT INTO users (id, tenant_id, upn, source, display_name, mail, enabled, roles, source_anchor,
                          on_prem_name, on_prem_dn, synced_at, created_at, updated_at)
       SELECT 'gu-' || i, 'grow-' || (1 + CAST(i / ? AS INTEGER)), 'g' || i || '@grow.test', 'synced', 'Growth ' || i,
              'g' || i || '@grow.test', 1, '[]', 'anchor-' || i, 'GROW\\g' || i,
              'uid=g' || i || ',ou=people,dc=grow,dc=test', 0, 0, 0
       FROM n`,
    ).run(size.users, perTenant);
    db.exec('COMMIT');
    // Log rows over the last 30 days, a tenth of them the bench tenant's (the one its export and
    // retention would scan), the rest spread over the others.
    const now = Date.now();
    const insert = db.prepare(
      `WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO signins (tenant_id, at, request_id, upn, user_id, method, outcome, client_id,
                            client_ip, agent_id, server, directory_code, agent_ms, directory_ms, total_ms)
       SELECT CASE WHEN i % 10 = 0 THEN ? ELSE 'grow-' || (1 + i % ?) END,
              CAST(? - (i * 2592000000.0 / ?) AS INTEGER), 'req-' || i, 'g' || (i % ?) || '@grow.test', NULL,
              'password_grant', CASE WHEN i % 10 = 1 THEN 'invalid_credentials' ELSE 'success' END,
              'client', '10.0.0.' || (i % 250), NULL, NULL, NULL, 1.5, 0.5, 3.0
       FROM n`,
    );
    for (let from = 0; from < size.signins; from += CHUNK) {
      const to = Math.min(size.signins, from + CHUNK) - 1;
      db.exec('BEGIN');
      insert.run(from, to, tenantId, Math.max(1, extra), now, size.signins, Math.max(1, size.users));
      db.exec('COMMIT');
    }
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  const seconds = Math.round((performance.now() - t0) / 100) / 10;
  // The seed writes ~2 GB: flushed here, so that no writeback of it can land in the measured window
  // (the report's `sync_s` says how long that took; 0.0 s on the runs in docs/benchmarks.md).
  const t1 = performance.now();
  execFileSync('sync');
  return { seconds, syncSeconds: Math.round((performance.now() - t1) / 100) / 10 };
};
