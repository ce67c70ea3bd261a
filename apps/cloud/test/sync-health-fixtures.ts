/** Sync health states from run records, on whichever engine `db` is (sync-health*.test.ts). */
import assert from 'node:assert/strict';
import type { Db } from '../src/db/index.ts';
import {
  emptyCounts,
  finishSyncRunRecord,
  STALLED_AFTER_MS,
  startSyncRun,
  syncHealth,
  updateSyncRun,
} from '../src/store/sync-runs.ts';

const MIN = 60_000;
let n = 0;

/** A run that started `ago` ms before `now` and ended as `status` (or still runs). */
export const addRun = async (
  db: Db,
  tenantId: string,
  now: number,
  ago: number,
  status: 'succeeded' | 'failed' | 'guarded' | 'running',
  opts: { intervalMinutes?: number; error?: string } = {},
): Promise<string> => {
  const id = `run-${++n}`;
  await startSyncRun(
    db,
    { tenantId, id, agentId: 'agent-1', intervalMinutes: opts.intervalMinutes },
    now - ago,
  );
  if (status === 'running')
    await updateSyncRun(db, tenantId, id, { pages: 1, counts: emptyCounts() }, now - ago);
  else await finishSyncRunRecord(db, tenantId, id, { status, error: opts.error }, now - ago + 1000);
  return id;
};

/** Walks through every state; the tenant must have no runs yet. */
export const checkHealthStates = async (db: Db, tenantId: string): Promise<void> => {
  const run = (now: number, ago: number, status: Parameters<typeof addRun>[4], opts = {}) =>
    addRun(db, tenantId, now, ago, status, opts);
  const state = async (now: number) => (await syncHealth(db, tenantId, now)).state;

  const t0 = Date.now() - 1000 * MIN;
  assert.equal(await state(t0), 'never');
  await run(t0, 10 * MIN, 'succeeded', { intervalMinutes: 60 });
  assert.equal(await state(t0), 'ok');
  const h = await syncHealth(db, tenantId, t0);
  assert.equal(h.problem, false);
  assert.equal(h.overdueAfterMinutes, 180, 'three full-sync intervals');
  assert.equal(await state(t0 + 170 * MIN), 'ok');
  assert.equal(await state(t0 + 200 * MIN), 'overdue', 'no success within 3 × 60 minutes');

  const t1 = t0 + 10 * MIN;
  await run(t1, 1 * MIN, 'running', { intervalMinutes: 60 });
  assert.equal(await state(t1), 'running');
  assert.equal(
    await state(t1 + STALLED_AFTER_MS + MIN),
    'stalled',
    'no page for longer than the stall limit',
  );

  const t2 = t1 + 10 * MIN;
  await run(t2, 1 * MIN, 'failed', { intervalMinutes: 60, error: 'page 3 could not be applied' });
  const failed = await syncHealth(db, tenantId, t2);
  assert.equal(failed.state, 'failed');
  assert.equal(failed.problem, true);
  assert.match(failed.message, /page 3 could not be applied/);

  const t3 = t2 + 10 * MIN;
  await run(t3, 1 * MIN, 'guarded', { intervalMinutes: 5, error: 'deletions held back' });
  assert.equal(await state(t3), 'guarded');
  assert.equal(await state(t3 + 20 * MIN), 'overdue', "the agent's own interval (5 minutes) counts");
  await run(t3 + 30 * MIN, 0, 'succeeded', { intervalMinutes: 5 });
  assert.equal(await state(t3 + 31 * MIN), 'ok');
};
