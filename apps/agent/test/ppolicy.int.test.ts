/**
 * OpenLDAP with ppolicy, every account state through Directory.validate(), and the reader of
 * the directory's own lockout policy (default ppolicy entry).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Hello } from '@gatehouse/protocol';
import { type SlapdInstance, startSlapd } from '../../../test/harness/slapd.ts';
import { type DirectoryConfig, loadAgentConfig } from '../src/config.ts';
import { Directory, type UserRef } from '../src/directory/index.ts';

const PW = 'Corr3ct-Horse!';
let slapd: SlapdInstance;
let tmp: string;
let dir: Directory;

const cfg = (over: Record<string, unknown> = {}): DirectoryConfig =>
  loadAgentConfig({
    env: {},
    overrides: {
      stateDir: tmp,
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPasswordFile: join(tmp, 'svc.pw'),
        baseDns: [slapd.peopleDn],
        ppolicyDefaultDn: `cn=default,ou=policies,${slapd.baseDn}`,
        timeoutMs: 3000,
        ...over,
      },
    },
  }).directory;

const at = (dn: string): UserRef => ({ dn, upn: 'x@example.test' });
const uid = (u: string) => at(`uid=${u},${slapd.peopleDn}`);

before(async () => {
  slapd = await startSlapd({
    users: ['alice', 'frank'].map((u) => ({ uid: u, password: PW, mail: `${u}@example.test` })),
    ppolicyStates: true,
    statePassword: PW,
  });
  tmp = mkdtempSync(join(tmpdir(), 'gh-agent-ppolicy-'));
  writeFileSync(join(tmp, 'svc.pw'), `${slapd.servicePassword}\n`, { mode: 0o600 });
  dir = new Directory(cfg(), { backgroundProbe: false });
});

after(async () => {
  await dir?.close();
  await slapd?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('must change (pwdReset): the bind succeeds at slapd, the agent still reports it; a wrong password stays wrong', async () => {
  const r = await dir.validate(at(slapd.states.mustChange), PW);
  assert.equal(r.outcome, 'password_must_change');
  assert.equal(r.directoryCode, '0/ppolicy:changeAfterReset');
  assert.equal((await dir.validate(at(slapd.states.mustChange), 'nope')).outcome, 'invalid_credentials');
  // The pooled connection the must-change user bound on serves the next user normally.
  assert.equal((await dir.validate(uid('alice'), PW)).outcome, 'success');
});

test('password expired (pwdMaxAge ran out): only revealed with the right password', async () => {
  // slapd only sees the 1 s pwdMaxAge run out once 2 whole seconds have passed (pwdChangedTime has
  // 1 s resolution); the harness waits 1.5 s.
  await new Promise((r) => setTimeout(r, 1000));
  const r = await dir.validate(at(slapd.states.passwordExpired), PW);
  assert.equal(r.outcome, 'password_expired');
  assert.equal(r.directoryCode, '49/ppolicy:passwordExpired');
  const wrong = await dir.validate(at(slapd.states.passwordExpired), 'nope');
  assert.equal(wrong.outcome, 'invalid_credentials');
  assert.equal(wrong.directoryCode, '49');
});

test('states slapd refuses before checking the password: end time, start time, administrative lock', async () => {
  // slapd answers "account locked" for any password here, so the agent cannot tell whether the
  // password was right: the user sees invalid_credentials, the directory code says why (ppolicy.ts).
  for (const pw of [PW, 'nope']) {
    const expired = await dir.validate(at(slapd.states.accountExpired), pw);
    assert.deepEqual(
      [expired.outcome, expired.directoryCode],
      ['invalid_credentials', '49/ppolicy:pwdEndTime'],
    );
    const notYet = await dir.validate(at(slapd.states.notYetValid), pw);
    assert.deepEqual(
      [notYet.outcome, notYet.directoryCode],
      ['invalid_credentials', '49/ppolicy:pwdStartTime'],
    );
    const admin = await dir.validate(at(slapd.states.locked), pw);
    assert.deepEqual([admin.outcome, admin.directoryCode], ['invalid_credentials', '49/ppolicy:adminLock']);
  }
});

test('lockout after pwdMaxFailure (3): the locking failure still looks wrong (as AD), then locked for any password', async () => {
  for (let i = 0; i < 3; i++) {
    const r = await dir.validate(uid('frank'), `bad-${i}`);
    assert.deepEqual([r.outcome, r.directoryCode], ['invalid_credentials', '49']);
  }
  for (const pw of [PW, 'bad-3']) {
    const r = await dir.validate(uid('frank'), pw);
    assert.deepEqual([r.outcome, r.directoryCode], ['locked_out', '49/ppolicy:locked']);
  }
  // An administrator unlocks: the right password works again.
  await slapd.ldapModify(
    `dn: uid=frank,${slapd.peopleDn}\nchangetype: modify\ndelete: pwdAccountLockedTime\n\n`,
  );
  assert.equal((await dir.validate(uid('frank'), PW)).outcome, 'success');
});

test('unknown DN and wrong password are the same answer', async () => {
  const unknown = await dir.validate(uid('nobody'), PW);
  const wrong = await dir.validate(uid('alice'), 'nope');
  assert.deepEqual([unknown.outcome, unknown.directoryCode], ['invalid_credentials', '49']);
  assert.deepEqual([wrong.outcome, wrong.directoryCode], [unknown.outcome, unknown.directoryCode]);
  // Reset alice's failure count so later tests start clean.
  assert.equal((await dir.validate(uid('alice'), PW)).outcome, 'success');
});

test('lockout policy: read from the default ppolicy entry, sent in health, refreshed on its interval only', async () => {
  const d = new Directory(cfg({ lockoutPolicyRefreshMs: 60_000 }), { backgroundProbe: false });
  try {
    const h = await d.probe();
    assert.deepEqual(h.lockoutPolicy, { threshold: 3, durationS: 0 });
    assert.ok(
      Hello.safeParse({
        type: 'hello',
        protocol: 1,
        version: 'x',
        hostname: 'h',
        capabilities: [],
        directory: h,
        clock: Date.now(),
      }).success,
    );
    const policy = `cn=default,ou=policies,${slapd.baseDn}`;
    await slapd.ldapModify(
      `dn: ${policy}\nchangetype: modify\nreplace: pwdLockoutDuration\npwdLockoutDuration: 900\n-\nreplace: pwdMaxFailure\npwdMaxFailure: 7\n\n`,
    );
    // A heartbeat's probe does not read it again before the interval...
    assert.deepEqual((await d.probe()).lockoutPolicy, { threshold: 3, durationS: 0 });
    // ...a refresh does.
    assert.deepEqual(await d.refreshLockoutPolicy(), { threshold: 7, durationS: 900 });
    assert.deepEqual(d.health.lockoutPolicy, { threshold: 7, durationS: 900 });
    await slapd.ldapModify(`dn: ${policy}\nchangetype: modify\nreplace: pwdLockout\npwdLockout: FALSE\n\n`);
    assert.deepEqual(await d.refreshLockoutPolicy(), { threshold: 0, durationS: 0 });
  } finally {
    await d.close();
  }
});

test('lockout policy: the default entry is cn=default,ou=policies,<first base DN>; a missing one keeps health ok', async () => {
  const c = cfg({ baseDns: [slapd.baseDn], ppolicyDefaultDn: undefined });
  assert.equal(c.ppolicyDefaultDn, `cn=default,ou=policies,${slapd.baseDn}`);
  const d = new Directory(c, { backgroundProbe: false });
  assert.equal((await d.refreshLockoutPolicy()).threshold, 0);
  await d.close();
  const missing = new Directory(cfg({ ppolicyDefaultDn: `cn=nope,${slapd.baseDn}` }), {
    backgroundProbe: false,
  });
  const h = await missing.probe();
  assert.equal(h.ok, true);
  assert.equal(h.lockoutPolicy, undefined);
  await missing.close();
});
