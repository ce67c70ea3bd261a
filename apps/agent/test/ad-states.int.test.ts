/**
 * Every AD account state against a real Samba AD DC, through Directory.validate(), over plain
 * LDAP, LDAPS and StartTLS (pinned CA, certificate checked against tlsServerName), by UPN and by
 * DOMAIN\name. States are only revealed with the right password; a locked account says so always.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { adUsers, NETBIOS, type SambaDc, startSambaDc, USER_PASSWORD } from '../../../test/harness/samba.ts';
import { Directory, type UserRef } from '../src/directory/index.ts';
import { type AdFixture, adFixture } from './helpers/ad.ts';

let dc: SambaDc;
let fx: AdFixture;

before(async () => {
  dc = await startSambaDc();
  fx = adFixture(dc);
});

after(async () => {
  await dc?.stop();
  fx?.cleanup();
});

const byUpn = (u: string): UserRef => ({ dn: '', upn: dc.upn(u) });
const byNetbios = (u: string): UserRef => ({ dn: '', upn: '', onPremName: `${NETBIOS}\\${u}` });

/** The state users and what the right password must give. */
const states: [string, string, string][] = [
  [adUsers.ok, 'success', '0'],
  [adUsers.disabled, 'account_disabled', '49/533'],
  [adUsers.mustChange, 'password_must_change', '49/773'],
  [adUsers.passwordExpired, 'password_expired', '49/532'],
  [adUsers.accountExpired, 'account_expired', '49/701'],
  [adUsers.logonHours, 'logon_hours', '49/530'],
  [adUsers.workstation, 'workstation_restricted', '49/531'],
];

test('lockout (threshold 5): the locking failure still says 52e, then 775 for any password', async () => {
  const d = new Directory(fx.cfg(), { backgroundProbe: false });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await d.validate(byUpn(adUsers.lockout), `wrong-${i}`);
      assert.deepEqual([r.outcome, r.directoryCode], ['invalid_credentials', '49/52e'], `attempt ${i + 1}`);
    }
    assert.equal(await dc.attribute(adUsers.lockout, 'badPwdCount'), '5');
    for (const pw of [USER_PASSWORD, 'wrong-5']) {
      const r = await d.validate(byUpn(adUsers.lockout), pw);
      assert.deepEqual([r.outcome, r.directoryCode], ['locked_out', '49/775']);
    }
  } finally {
    await d.close();
  }
});

for (const transport of ['ldap', 'ldaps', 'starttls'] as const) {
  test(`${transport}: every account state with the right password, and 52e with a wrong one`, async () => {
    const d = new Directory(fx.cfg(fx.transports[transport]), { backgroundProbe: false });
    try {
      for (const [user, outcome, code] of states) {
        const right = await d.validate(byUpn(user), USER_PASSWORD);
        assert.deepEqual([user, right.outcome, right.directoryCode], [user, outcome, code]);
        assert.equal(right.server, (fx.transports[transport].urls as string[])[0]);
        assert.ok(right.directoryMs > 0);
        // A state is never revealed to a wrong password.
        const wrong = await d.validate(byUpn(user), 'Not-the-passw0rd');
        assert.deepEqual([user, wrong.outcome, wrong.directoryCode], [user, 'invalid_credentials', '49/52e']);
      }
      const unknown = await d.validate(byUpn('no-such-user'), USER_PASSWORD);
      assert.deepEqual([unknown.outcome, unknown.directoryCode], ['invalid_credentials', '49/52e']);
      const locked = await d.validate(byUpn(adUsers.lockout), USER_PASSWORD);
      assert.equal(locked.outcome, 'locked_out');
    } finally {
      await d.close();
    }
  });
}

test('DOMAIN\\name binds (the cloud sends onPremName): states map the same way', async () => {
  const d = new Directory(fx.cfg(fx.transports.ldaps), { backgroundProbe: false });
  try {
    assert.equal(d.bindName(byNetbios('alice')), 'CORP\\alice');
    assert.equal((await d.validate(byNetbios(adUsers.ok), USER_PASSWORD)).outcome, 'success');
    assert.equal(
      (await d.validate({ dn: '', upn: '', onPremName: `corp\\${adUsers.ok}` }, USER_PASSWORD)).outcome,
      'success',
    );
    assert.equal((await d.validate(byNetbios(adUsers.disabled), USER_PASSWORD)).directoryCode, '49/533');
    assert.equal((await d.validate(byNetbios(adUsers.mustChange), USER_PASSWORD)).directoryCode, '49/773');
    assert.equal((await d.validate(byNetbios(adUsers.spare), 'wrong')).directoryCode, '49/52e');
    // With both present DOMAIN\\name is used: it survives a UPN change the cloud has not synced yet.
    assert.equal(
      d.bindName({ dn: '', upn: 'alice@corp.example.test', onPremName: 'CORP\\alice' }),
      'CORP\\alice',
    );
    assert.equal(d.bindName({ dn: '', upn: 'alice@corp.example.test' }), 'alice@corp.example.test');
  } finally {
    await d.close();
  }
});

test('TLS verification stays on: no tlsServerName, or another CA, and the DC is unreachable', async () => {
  const other = join(fx.tmp, 'other-ca.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=Other CA',
      '-keyout',
      join(fx.tmp, 'other.key'),
      '-out',
      other,
    ],
    { stdio: 'ignore' },
  );
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['ldaps by IP without tlsServerName', { ...fx.transports.ldaps, tlsServerName: undefined }, /^tls/],
    ['starttls by IP without tlsServerName', { ...fx.transports.starttls, tlsServerName: undefined }, /^tls/],
    ['ldaps with another CA', { ...fx.transports.ldaps, caFile: other }, /^tls/],
    [
      'ldaps with a name the certificate lacks',
      { ...fx.transports.ldaps, tlsServerName: 'dc2.corp.example.test' },
      /^tls/,
    ],
  ];
  for (const [what, over, code] of cases) {
    const d = new Directory(fx.cfg(over), { backgroundProbe: false });
    try {
      const r = await d.validate(byUpn(adUsers.ok), USER_PASSWORD);
      assert.equal(r.outcome, 'directory_unreachable', what);
      assert.match(r.directoryCode, code, `${what}: ${r.directoryCode}`);
      assert.equal((await d.probe()).ok, false, what);
    } finally {
      await d.close();
    }
  }
});

test('timing: a wrong password and an unknown user take the same time at the agent (floor on)', async () => {
  const d = new Directory(fx.cfg({ poolSize: 1 }), { backgroundProbe: false });
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  try {
    // Right-password binds (a normal day) lift the floor before any failure is seen.
    for (let i = 0; i < 10; i++)
      assert.equal((await d.validate(byUpn(adUsers.bench), USER_PASSWORD)).outcome, 'success');
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 24; i++) {
      let t0 = performance.now();
      assert.equal((await d.validate(byUpn(`nobody-${i}`), 'Wrong-pw-1')).outcome, 'invalid_credentials');
      unknown.push(performance.now() - t0);
      t0 = performance.now();
      assert.equal((await d.validate(byUpn(adUsers.bench), 'Wrong-pw-1')).outcome, 'invalid_credentials');
      wrong.push(performance.now() - t0);
      // Stay below the domain threshold (5).
      if (i % 3 === 2)
        assert.equal((await d.validate(byUpn(adUsers.bench), USER_PASSWORD)).outcome, 'success');
    }
    const diff = Math.abs(median(wrong) - median(unknown));
    // 4 ms on a quiet machine; when other work slows every bind, a tenth of the median.
    assert.ok(
      diff < Math.max(4, median(wrong) / 10),
      `medians: wrong ${median(wrong)} ms, unknown ${median(unknown)} ms`,
    );
  } finally {
    await d.close();
  }
});
