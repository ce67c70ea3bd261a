/**
 * Smart lockout against a real Active Directory (Samba AD DC, lockout threshold 5, 30 minutes):
 * with every cloud setting at its default (threshold 10, 60 s) the cloud must still stop password
 * spraying before the domain controller locks the real account, because it follows the policy the
 * agent reports (4 failures, 1800 s). AD's own badPwdCount tells exactly how many wrong binds
 * reached the directory.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { catalog } from '@gatehouse/protocol';
import { listAudit } from '../apps/cloud/src/store/audit.ts';
import { getTenant, updateSettings } from '../apps/cloud/src/store/tenants.ts';
import { waitFor } from './harness/children.ts';
import {
  AD_LOCKOUT_THRESHOLD,
  adUsers,
  BASE_DN,
  NETBIOS,
  REALM,
  type SambaDc,
  startSambaDc,
  USER_PASSWORD,
} from './harness/samba.ts';
import { adDirectory, type Stack, startStack } from './harness/stack.ts';

/** What the cloud applies per location with its default settings against AD's threshold of 5: half
 * of the 4 wrong passwords AD takes, so both locations together stay below it. */
const CLOUD_THRESHOLD = Math.floor((AD_LOCKOUT_THRESHOLD - 1) / 2);
const ATTACKER = '203.0.113.66';
const HOME = '192.0.2.10';
let dc: SambaDc;
let stack: Stack;

before(async () => {
  dc = await startSambaDc();
  stack = await startStack({
    domain: REALM,
    directory: adDirectory({ ...dc, baseDn: BASE_DN, netbios: NETBIOS }),
    expectUsers: [adUsers.ok, adUsers.spray, adUsers.spare, adUsers.wrongPassword, adUsers.logonHours].map(
      (u) => dc.upn(u),
    ),
  });
  await waitFor('the agent to report AD lockout policy', async () => {
    const t = await getTenant(stack.cloud.ctx.db, stack.tenantId);
    return t.directoryLockout?.threshold === AD_LOCKOUT_THRESHOLD;
  });
  stack.cloud.authenticator.invalidate(stack.tenantId);
});

test('the defaults are below AD: a looser setting is refused, the applied one follows AD', async () => {
  const t = await getTenant(stack.cloud.ctx.db, stack.tenantId);
  assert.deepEqual([t.lockoutThreshold, t.lockoutDurationS], [10, 60], 'every cloud setting at its default');
  assert.deepEqual([t.effectiveLockout.threshold, t.effectiveLockout.durationS], [CLOUD_THRESHOLD, 1800]);
  await assert.rejects(
    updateSettings(stack.cloud.ctx.db, stack.tenantId, { lockoutThreshold: 5 }, { activeAgents: 1 }),
    (err: { code?: string }) => err.code === 'lockout_weaker_than_directory',
  );
});

after(async () => {
  await stack?.stop();
  await dc?.stop();
});

const badPwdCount = async (user: string) => Number((await dc.attribute(user, 'badPwdCount')) ?? 0);

test(`a spray of 50 wrong passwords locks the user in the cloud; AD sees ${CLOUD_THRESHOLD} binds and stays unlocked`, async () => {
  const user = dc.upn(adUsers.spray);
  const codes: string[] = [];
  for (let i = 0; i < 50; i++)
    codes.push((await stack.passwordGrant(user, `Spray-${i}-pw!`, { ip: ATTACKER })).code);
  assert.deepEqual(codes.slice(0, CLOUD_THRESHOLD), Array(CLOUD_THRESHOLD).fill('invalid_credentials'));
  assert.ok(codes.slice(CLOUD_THRESHOLD).every((c) => c === 'locked_out'));
  assert.equal(await badPwdCount(adUsers.spray), CLOUD_THRESHOLD);
  assert.ok(CLOUD_THRESHOLD < AD_LOCKOUT_THRESHOLD);
  // The account is not locked in AD: the right password still binds at the DC.
  assert.equal(await dc.attribute(adUsers.spray, 'lockoutTime').then((v) => Number(v ?? 0)), 0);

  const page = await stack.signInPage(user, USER_PASSWORD);
  assert.equal(page.code, 'locked_out');
  assert.ok(page.html.includes(catalog.locked_out.message));
  const logs = (await stack.signIns()).filter((r) => r.upn === user);
  assert.ok(
    logs.filter((r) => r.outcome === 'locked_out').length >= 47,
    'each refused attempt is in the sign-in log',
  );
  const audit = await listAudit(stack.cloud.ctx.db, stack.tenantId, {});
  assert.ok(
    audit.some((e) => e.action === 'user.locked'),
    'the lockout is in the audit log',
  );
});

test('with the default settings, the real user from a familiar location still signs in while an attacker elsewhere is locked out', async () => {
  const user = dc.upn(adUsers.spare);
  assert.equal((await stack.passwordGrant(user, USER_PASSWORD, { ip: HOME })).code, 'success');
  for (let i = 0; i < 10; i++) await stack.passwordGrant(user, `Guess-${i}!`, { ip: ATTACKER });
  assert.equal((await stack.passwordGrant(user, USER_PASSWORD, { ip: ATTACKER })).code, 'locked_out');
  assert.equal((await stack.passwordGrant(user, USER_PASSWORD, { ip: '192.0.2.77' })).code, 'success');
  assert.equal(await badPwdCount(adUsers.spare), 0, 'the success reset the directory counter');
});

test('the same wrong password sent 20 times does not lock the account', async () => {
  const user = dc.upn(adUsers.wrongPassword);
  for (let i = 0; i < 20; i++) {
    assert.equal(
      (await stack.passwordGrant(user, 'Same-wrong-1!', { ip: ATTACKER })).code,
      'invalid_credentials',
    );
  }
  assert.equal(await badPwdCount(adUsers.wrongPassword), 1, 'only the first one reached the directory');
  assert.equal((await stack.passwordGrant(user, USER_PASSWORD, { ip: ATTACKER })).code, 'success');
});

test("a spray from two places, one of them the user's own network, never brings AD to its threshold", async () => {
  const user = dc.upn(adUsers.wrongPassword);
  // The previous test ended with a success from ATTACKER: that network is now familiar.
  const codes: string[] = [];
  for (let i = 0; i < 10; i++) {
    codes.push((await stack.passwordGrant(user, `Elsewhere-${i}!`, { ip: '198.51.100.5' })).code);
    codes.push((await stack.passwordGrant(user, `Nearby-${i}!`, { ip: ATTACKER })).code);
  }
  // Each location spends its own share; together they stay below AD's threshold.
  assert.equal(codes.filter((c) => c === 'invalid_credentials').length, 2 * CLOUD_THRESHOLD, codes.join(','));
  assert.equal(await badPwdCount(adUsers.wrongPassword), 2 * CLOUD_THRESHOLD);
  assert.ok(2 * CLOUD_THRESHOLD < AD_LOCKOUT_THRESHOLD);
  assert.equal(await dc.attribute(adUsers.wrongPassword, 'lockoutTime').then((v) => Number(v ?? 0)), 0);
});

test('a name nobody has answers exactly like a real user, from the password grant and the page', async () => {
  const codesOf = async (user: string) => {
    const codes: string[] = [];
    for (let i = 0; i < 8; i++)
      codes.push((await stack.passwordGrant(user, `Probe-${i}!`, { ip: '198.51.100.99' })).code);
    codes.push((await stack.signInPage(user, 'Probe-page!')).code);
    return codes;
  };
  const known = await codesOf(dc.upn(adUsers.logonHours));
  const unknown = await codesOf(`nobody-here@${REALM}`);
  assert.deepEqual(known, [
    ...Array(CLOUD_THRESHOLD).fill('invalid_credentials'),
    ...Array(9 - CLOUD_THRESHOLD).fill('locked_out'),
  ]);
  assert.deepEqual(unknown, known);
});

test(`50 concurrent wrong passwords lock at exactly ${CLOUD_THRESHOLD}, with exactly ${CLOUD_THRESHOLD} directory binds`, async () => {
  const user = dc.upn(adUsers.ok);
  const codes = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      stack.passwordGrant(user, `Concurrent-${i}!`, { ip: ATTACKER }).then((r) => r.code),
    ),
  );
  assert.equal(codes.filter((c) => c === 'invalid_credentials').length, CLOUD_THRESHOLD);
  assert.equal(codes.filter((c) => c === 'locked_out').length, 50 - CLOUD_THRESHOLD);
  assert.equal(await badPwdCount(adUsers.ok), CLOUD_THRESHOLD);
});

test('20 sign-ins failing because no agent is connected lock nothing', async () => {
  const user = dc.upn(adUsers.bench);
  for (const a of stack.agents) await a.stop();
  const codes: string[] = [];
  for (let i = 0; i < 20; i++)
    codes.push((await stack.passwordGrant(user, `Any-${i}!`, { ip: ATTACKER })).code);
  assert.ok(
    codes.every((c) => c === 'no_agent'),
    codes.join(','),
  );
  await stack.startAgent();
  assert.equal((await stack.passwordGrant(user, USER_PASSWORD, { ip: ATTACKER })).code, 'success');
});

test('no password reaches a log line', () => {
  assert.ok(!stack.output().includes(USER_PASSWORD));
  assert.ok(!stack.output().includes('Same-wrong-1!'));
});
