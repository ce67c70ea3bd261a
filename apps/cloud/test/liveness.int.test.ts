/**
 * Lockout releases the in-flight counts of a cloud process that is gone (lockout/rules.ts); NATS
 * tells which are (gateway/liveness.ts). A real NATS server, two connections as two processes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'nats';
import pino from 'pino';
import { NATS_URL } from '../../../test/harness/cluster.ts';
import { startLiveness } from '../src/gateway/liveness.ts';

test('a process is gone once NATS has had nobody answering for it for 3 s; one that answers is not', async () => {
  const [a, b] = await Promise.all([connect({ servers: NATS_URL }), connect({ servers: NATS_URL })]);
  const log = pino({ level: 'silent' });
  const clusterId = randomBytes(4).toString('hex');
  startLiveness(a, { clusterId, incarnation: 'first', log });
  const watcher = startLiveness(b, { clusterId, incarnation: 'second', log });
  try {
    assert.equal(await watcher.isGone('first'), false, 'it answers');
    await a.close();
    assert.equal(await watcher.isGone('first'), false, 'silent for a moment only: it may be reconnecting');
    await sleep(3_100);
    assert.equal(await watcher.isGone('first'), true);
    assert.equal(await watcher.isGone('second'), false, 'a process is never gone to itself');
  } finally {
    await a.close().catch(() => {});
    await b.close();
  }
});
