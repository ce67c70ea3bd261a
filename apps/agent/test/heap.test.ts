import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heapCheckpoint, startHeapRelief } from '../src/heap.ts';

const MiB = 1024 * 1024;

test('a run collects once its heap has grown 1.3 times past what the last collection left', () => {
  let used = 10 * MiB;
  const collected: number[] = [];
  const gc = () => {
    collected.push(used);
    used = Math.round(used / 2); // what survives
  };
  const relief = startHeapRelief({ gc, used: () => used, floorBytes: 40 * MiB, everyMs: 60_000 });
  try {
    used = 39 * MiB;
    heapCheckpoint();
    assert.deepEqual(collected, [], 'under the floor nothing is collected');
    used = 41 * MiB;
    heapCheckpoint();
    assert.deepEqual(collected, [41 * MiB]);
    // 20.5 MiB survived: the limit is the floor again. Then a bigger live set: 100 -> 50 MiB.
    used = 100 * MiB;
    heapCheckpoint();
    used = 64 * MiB;
    heapCheckpoint();
    assert.equal(collected.length, 2, '64 MiB is under 1.3 x 50 MiB');
    used = 66 * MiB;
    heapCheckpoint();
    assert.equal(collected.length, 3);
    assert.equal(relief.collections, 3);
  } finally {
    relief.stop();
  }
  assert.equal(collected.length, 4, 'a run that collected collects once more when it ends');
  used = 500 * MiB;
  heapCheckpoint();
  assert.equal(collected.length, 4, 'a stopped relief collects nothing more');
});

test('a run starts by collecting what the last one left, and the timer looks between checkpoints', async () => {
  let used = 90 * MiB;
  let n = 0;
  const gc = () => {
    n++;
    used = 30 * MiB;
  };
  const relief = startHeapRelief({ gc, used: () => used, floorBytes: 40 * MiB, everyMs: 5 });
  assert.equal(n, 1, 'started above the floor: collected at once');
  used = 80 * MiB;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(n, 2, 'the timer saw 80 MiB over the 40 MiB limit');
  relief.stop();
});

test('without gc (no --expose-gc) relief does nothing', async () => {
  const relief = startHeapRelief({ used: () => 10_000 * MiB, everyMs: 1 });
  await new Promise((r) => setTimeout(r, 10));
  relief.stop();
  assert.equal(relief.collections, 0);
});
