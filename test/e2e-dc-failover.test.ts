/**
 * Domain controller failover: two DCs of one domain (Samba), the agent configured with both. One
 * DC stops in the middle of steady sign-in load; sign-ins keep succeeding on the other, and the
 * sign-in log shows which DC answered each one.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  adUsers,
  BASE_DN,
  NETBIOS,
  REALM,
  type SambaDc,
  startSambaDc,
  USER_PASSWORD,
} from './harness/samba.ts';
import { adDirectory, type Stack, startStack } from './harness/stack.ts';

let dc1: SambaDc;
let dc2: SambaDc;
let stack: Stack;

before(async () => {
  dc1 = await startSambaDc();
  dc2 = await startSambaDc({ instance: 2 });
  const directory = adDirectory({ ...dc1, baseDn: BASE_DN, netbios: NETBIOS });
  stack = await startStack({
    domain: REALM,
    directory: { ...directory, urls: [dc1.url, dc2.url] },
    expectUsers: [dc1.upn(adUsers.ok), dc1.upn(adUsers.spare)],
  });
});

after(async () => {
  await stack?.stop();
  await dc1?.stop();
  await dc2?.stop();
});

test('one of two DCs stops mid-run: every sign-in still succeeds, on the other DC', async () => {
  const results: string[] = [];
  let running = true;
  const worker = async (user: string) => {
    while (running) results.push((await stack.passwordGrant(dc1.upn(user), USER_PASSWORD)).code);
  };
  const workers = [worker(adUsers.ok), worker(adUsers.spare), worker(adUsers.ok)];
  await sleep(1500);
  const beforeStop = results.length;
  await dc1.stop();
  await sleep(2500);
  running = false;
  await Promise.all(workers);
  const failed = results.filter((c) => c !== 'success');
  assert.deepEqual(failed, [], `${failed.length} of ${results.length} sign-ins failed`);
  assert.ok(results.length - beforeStop > 10, 'sign-ins went on after the stop');
  const servers = (await stack.signIns()).map((r) => r.server);
  process.stdout.write(`# servers: ${JSON.stringify([...new Set(servers)])} ${results.length} sign-ins\n`);
  assert.ok(servers.includes(dc1.url) && servers.includes(dc2.url), 'both DCs answered, before and after');
  assert.equal(servers[0], dc2.url, 'the latest sign-ins are answered by the DC that is still up');
});
