/**
 * The sign-in log's promise: `write` resolves only once its row is committed, concurrent rows share
 * commits, one bad row fails only its own sign-in, and a success the log cannot hold is refused.
 * Real SQLite state; PostgreSQL is covered end to end by test/e2e-signin-log-crash.test.ts.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import type { Db } from '../src/db/index.ts';
import { type AuthenticatorService, createAuthenticator } from '../src/signin/authenticator.ts';
import { createSignInLog, type SignInRow } from '../src/signin/log.ts';
import { listSignIns } from '../src/store/sign-ins.ts';
import { createTenant } from '../src/store/tenants.ts';
import { openTestState, type TestState } from './directory-fixtures.ts';

const ADMIN_PW = 'Break-glass-pw-1';
let s: TestState;
let tenantId: string;

before(async () => {
  s = await openTestState();
  ({ tenantId } = await createTenant(s.ctx, {
    name: 'Contoso',
    domain: 'contoso.com',
    admin: { upn: 'admin@contoso.com', password: ADMIN_PW },
  }));
});
after(() => s.cleanup());

const row = (requestId: string, extra: Partial<SignInRow> = {}): SignInRow => ({
  tenant_id: tenantId,
  at: Date.now(),
  request_id: requestId,
  upn: 'someone@contoso.com',
  method: 'browser',
  outcome: 'success',
  total_ms: 1,
  ...extra,
});

const stored = async (requestId: string) =>
  (await listSignIns(s.ctx.db, tenantId, { limit: 1000 })).filter((r) => r.requestId === requestId).length;

/** The real database, with its multi-row INSERTs into the sign-in log counted. */
const countingInserts = (db: Db) => {
  const counter = { inserts: 0 };
  const proxy = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'insertInto')
        return (table: 'signins') => {
          counter.inserts++;
          return target.insertInto(table);
        };
      return Reflect.get(target, prop, receiver);
    },
  });
  return { db: proxy, counter };
};

test('a row is committed when write resolves, without waiting for a timer', async () => {
  const log = createSignInLog(s.ctx.db);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await log.write(row(`lone-${i}`));
    times.push(performance.now() - t);
    assert.equal(await stored(`lone-${i}`), 1, 'the row is in the table as soon as write resolves');
  }
  // A batcher on a timer would wait for company (the old one 25 ms); a lone row goes at once.
  const median = times.sort((a, b) => a - b)[2]!;
  assert.ok(median < 20, `a lone write took ${median.toFixed(1)} ms`);
});

test('concurrent rows share commits (group commit), and every caller waits for its own', async () => {
  const { db, counter } = countingInserts(s.ctx.db);
  const log = createSignInLog(db, { maxBatch: 64 });
  const ids = Array.from({ length: 300 }, (_, i) => `group-${i}`);
  await Promise.all(
    ids.map(async (id) => {
      await log.write(row(id));
      assert.equal(await stored(id), 1, `${id} resolved before its row was committed`);
    }),
  );
  // 300 rows, at most 64 per statement: 5 statements if all came in one turn, never one per row.
  assert.ok(counter.inserts >= 5 && counter.inserts < 30, `${counter.inserts} INSERTs for 300 rows`);
});

test('a bad row fails only its own write; the rows it was batched with are committed', async () => {
  const log = createSignInLog(s.ctx.db);
  const bad = row('bad-1', { outcome: null as unknown as string });
  const results = await Promise.allSettled([
    log.write(row('good-1')),
    log.write(bad),
    log.write(row('good-2')),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  assert.equal(await stored('good-1'), 1);
  assert.equal(await stored('good-2'), 1);
  assert.equal(await stored('bad-1'), 0);
});

test('no tokens without a log row: a right password is refused while the log cannot be written', async () => {
  const auth: AuthenticatorService = createAuthenticator(s.ctx);
  const signIn = (password: string) =>
    auth.authenticate({ tenantId, username: 'admin@contoso.com', password, method: 'browser' });
  const code = (r: Awaited<ReturnType<typeof signIn>>) => (r.ok ? 'success' : r.code);
  assert.equal(code(await signIn(ADMIN_PW)), 'success');

  // The table is taken away under the running authenticator (a full disk or a lost database behaves alike).
  await sql`ALTER TABLE signins RENAME TO signins_away`.execute(s.ctx.db);
  try {
    assert.equal(code(await signIn(ADMIN_PW)), 'internal_error', 'a success the log lacks is refused');
    assert.equal(code(await signIn('wrong')), 'invalid_credentials', 'a failure still answers as itself');
  } finally {
    await sql`ALTER TABLE signins_away RENAME TO signins`.execute(s.ctx.db);
  }
  const ok = await signIn(ADMIN_PW);
  assert.ok(ok.ok);
  assert.equal(await stored(ok.requestId), 1);
  await auth.close();
});
