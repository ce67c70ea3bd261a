/**
 * What the cloud's logger hides: secrets by field name and by path, never ordinary fields that
 * happen to share a name with an OAuth parameter (an agent's close code, an error code).
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../src/http/logger.ts';

const capture = () => {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ logLevel: 'info' }, stream), lines };
};

test('secrets are redacted by name and path; a close code or an error code is kept', () => {
  const { log, lines } = capture();
  const secret = 'Sekret-42';
  log.info({ code: 1006, reason: 'closed' }, 'agent disconnected');
  log.info({ err: { code: 'ECONNRESET' }, outcome: { code: 'no_agent' } }, 'relay failed');
  log.info({ password: secret, nested: { client_secret: secret, refresh_token: secret } }, 'x');
  log.info({ body: { code: secret, token: secret, grant_type: 'authorization_code' } }, 'y');
  log.info({ req: { headers: { authorization: `Bearer ${secret}`, cookie: secret } } }, 'z');
  assert.equal(lines[0]?.code, 1006);
  assert.deepEqual(lines[1]?.err, { code: 'ECONNRESET' });
  assert.deepEqual(lines[1]?.outcome, { code: 'no_agent' });
  assert.ok(!JSON.stringify(lines).includes(secret), JSON.stringify(lines.slice(2)));
  assert.equal((lines[3]!.body as Record<string, unknown>).grant_type, 'authorization_code');
});
