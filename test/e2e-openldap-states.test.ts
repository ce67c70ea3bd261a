/**
 * OpenLDAP (slapd with the ppolicy overlay) account states, end to end through the cloud. A bind
 * alone does not tell them apart: must-change binds successfully, and slapd refuses locked or
 * ended accounts before it checks the password. The agent reads the password policy response and
 * the entry; the user learns a state only when the password was right (or for a lockout, as AD).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const execFileP = promisify(execFile);

const DOMAIN = 'example.test';
const PW = `State-${Math.random().toString(36).slice(2, 8)}-Pw1`;
let slapd: SlapdInstance;
let stack: Stack;
const upn = (dn: string) => `${/^uid=([^,]+)/.exec(dn)![1]}@${DOMAIN}`;

before(async () => {
  slapd = await startSlapd({
    users: [{ uid: 'frank', password: PW }],
    ppolicyStates: true,
    statePassword: PW,
  });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
      extra: {
        upnAttribute: 'uid',
        upnDomain: DOMAIN,
        ppolicyDefaultDn: `cn=default,ou=policies,${slapd.baseDn}`,
      },
    },
    expectUsers: [`frank@${DOMAIN}`, upn(slapd.states.mustChange), upn(slapd.states.accountExpired)],
  });
});

after(async () => {
  await stack?.stop();
  await slapd?.stop();
});

const logOf = async (user: string) => (await stack.signIns()).find((r) => r.upn === user)!;

test('must change at next logon: the bind succeeds, the user is still told to change it', async () => {
  const user = upn(slapd.states.mustChange);
  assert.equal((await stack.passwordGrant(user, PW)).code, 'password_must_change');
  assert.equal((await logOf(user)).directory_code, '0/ppolicy:changeAfterReset');
  assert.equal((await stack.signInPage(user, PW)).code, 'password_must_change');
  assert.equal((await stack.passwordGrant(user, 'Wrong-1!')).code, 'invalid_credentials');
});

test('password expired: revealed to the right password only', async () => {
  const user = upn(slapd.states.passwordExpired);
  assert.equal((await stack.passwordGrant(user, PW)).code, 'password_expired');
  assert.equal((await logOf(user)).directory_code, '49/ppolicy:passwordExpired');
  assert.equal((await stack.passwordGrant(user, 'Wrong-1!')).code, 'invalid_credentials');
});

test('account end time passed: the user sees invalid credentials, the log says why', async () => {
  const user = upn(slapd.states.accountExpired);
  assert.equal((await stack.passwordGrant(user, PW)).code, 'invalid_credentials');
  assert.equal((await logOf(user)).directory_code, '49/ppolicy:pwdEndTime');
});

test('the cloud stops below pwdMaxFailure; locked by the directory itself: locked_out for any password', async () => {
  const user = `frank@${DOMAIN}`;
  // pwdMaxFailure (3) lets 2 wrong passwords through; each location gets half of them (1), so a
  // spray through the cloud never locks the directory.
  assert.equal((await stack.passwordGrant(user, 'Bad-0!')).code, 'invalid_credentials');
  assert.equal((await stack.passwordGrant(user, 'Bad-1!')).code, 'locked_out');
  assert.equal((await logOf(user)).directory_code, null, 'refused by the cloud, no bind');
  // Two more wrong binds straight at slapd (not through the cloud) lock it there.
  const dn = `uid=frank,${slapd.peopleDn}`;
  for (const pw of ['Bad-direct-1!', 'Bad-direct-2!'])
    await execFileP('ldapwhoami', ['-x', '-H', slapd.url, '-D', dn, '-w', pw]).catch(() => {});
  await stack.cloud.ctx.db.deleteFrom('lockout_counters').where('tenant_id', '=', stack.tenantId).execute();
  stack.cloud.authenticator.invalidate(stack.tenantId);
  assert.equal((await stack.passwordGrant(user, PW)).code, 'locked_out');
  assert.equal((await logOf(user)).directory_code, '49/ppolicy:locked');
  assert.equal((await stack.signInPage(user, PW)).code, 'locked_out');
});

test('the agent reports the directory lockout policy to the cloud', async () => {
  const t = await stack.cloud.ctx.db
    .selectFrom('tenants')
    .select(['directory_lockout_threshold', 'directory_lockout_duration_s'])
    .where('id', '=', stack.tenantId)
    .executeTakeFirstOrThrow();
  assert.equal(t.directory_lockout_threshold, 3);
});
