/** Which cloud refusals stop the agent (apps/agent/src/channel/refusal.ts); the rest are retried. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  EXIT_CERTIFICATE_REFUSED,
  EXIT_PROTOCOL_REFUSED,
  refusalExitCode,
  refusalFromErrorFrame,
  refusalFromUpgrade,
} from '../src/channel/refusal.ts';

const body = (o: unknown) => JSON.stringify(o);

test('an upgrade refused with the catalog certificate_rejected is permanent; other answers are retried', () => {
  const r = refusalFromUpgrade(401, body({ error: 'certificate_rejected', message: 'not accepted' }));
  assert.equal(r?.code, 'certificate_rejected');
  assert.equal(refusalExitCode(r!), EXIT_CERTIFICATE_REFUSED);
  assert.equal(refusalFromUpgrade(401, 'Unauthorized'), null, 'a proxy or balancer answer');
  assert.equal(refusalFromUpgrade(401, body({ error: 'invalid_token' })), null);
  assert.equal(refusalFromUpgrade(503, body({ error: 'certificate_rejected' })), null);
  assert.equal(refusalFromUpgrade(404, body({ error: 'not_found' })), null);
});

test('error frames: certificate_rejected always, protocol_error only before the welcome', () => {
  assert.equal(refusalFromErrorFrame('certificate_rejected', 'deleted', true)?.code, 'certificate_rejected');
  const p = refusalFromErrorFrame('protocol_error', 'protocol 2 is not supported', false);
  assert.equal(p?.code, 'protocol_error');
  assert.equal(refusalExitCode(p!), EXIT_PROTOCOL_REFUSED);
  assert.equal(refusalFromErrorFrame('protocol_error', 'one bad frame', true), null);
  assert.equal(refusalFromErrorFrame('internal_error', 'try later', false), null);
});
