/**
 * The embedded database checkpoints its WAL from a worker thread, not inside a commit on the
 * event loop: pages reach the database file although no commit crossed the writer's own
 * automatic threshold, and the WAL stays bounded under a steady stream of commits.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openSqlite } from '../src/db/sqlite.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a worker thread checkpoints the WAL while the event loop keeps committing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-ckpt-'));
  const file = join(dir, 'db.sqlite');
  const { raw } = openSqlite(file);
  try {
    raw.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    const threshold = (raw.prepare('PRAGMA wal_autocheckpoint').get() as { wal_autocheckpoint: number })
      .wal_autocheckpoint;
    const insert = raw.prepare('INSERT INTO t (v) VALUES (?)');
    const pad = 'x'.repeat(3000);
    // About one page per commit, well below the writer's own threshold.
    for (let i = 0; i < threshold / 4; i++) insert.run(pad);
    await sleep(800);
    assert.ok(statSync(file).size > (threshold / 4) * 3000, 'the rows reached the database file');
    // A long stream of commits: the WAL is recycled instead of growing with it.
    for (let i = 0; i < threshold * 3; i++) {
      insert.run(pad);
      if (i % 1000 === 0) await sleep(5);
    }
    assert.ok(statSync(`${file}-wal`).size < threshold * 4096 * 1.5, 'the WAL stayed bounded');
  } finally {
    raw.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
