/**
 * Sync and the lockout policy reader against a real Samba AD DC: objectGUID anchors in their
 * usual string form, UPN, NETBIOS\sAMAccountName (the NetBIOS name read from the directory),
 * enabled=false for a disabled account; lockoutThreshold/lockoutDuration from the domain object.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import {
  AD_LOCKOUT_THRESHOLD,
  adUsers,
  BASE_DN,
  NETBIOS,
  REALM,
  type SambaDc,
  startSambaDc,
  USER_PASSWORD,
} from '../../../test/harness/samba.ts';
import { Directory } from '../src/directory/index.ts';
import { collectUsers } from '../src/sync.ts';
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

/** objectGUID as ldapsearch prints it (base64 of the 16 bytes), independently of the agent's code. */
const ldapsearchGuid = async (user: string): Promise<string> => {
  const { stdout } = await promisify(execFile)('ldapsearch', [
    '-LLL',
    '-x',
    '-H',
    dc.url,
    '-D',
    dc.adminUpn,
    '-w',
    dc.adminPassword,
    '-b',
    dc.dn(user),
    '-s',
    'base',
    'objectGUID',
  ]);
  const b = Buffer.from(/^objectGUID:: (\S+)$/m.exec(stdout)![1], 'base64');
  // Windows GUID string: the first three groups are little-endian.
  const h = b.toString('hex');
  const le = (s: string) => s.match(/../g)!.reverse().join('');
  return `${le(h.slice(0, 8))}-${le(h.slice(8, 12))}-${le(h.slice(12, 16))}-${h.slice(16, 20)}-${h.slice(20)}`;
};

test('sync over LDAPS: GUID anchors, UPNs, NETBIOS\\sAMAccountName, enabled state', async () => {
  const d = new Directory(fx.cfg(fx.transports.ldaps), { backgroundProbe: false });
  try {
    const r = await collectUsers(d, 3);
    assert.equal(r.server, dc.ldapsUrl);
    const by = new Map(r.users.map((u) => [u.upn, u]));
    for (const name of Object.values(adUsers)) assert.ok(by.has(`${name}@${REALM}`), `${name} synced`);
    const alice = by.get(dc.upn(adUsers.ok))!;
    assert.equal(alice.anchor, await ldapsearchGuid(adUsers.ok));
    assert.match(alice.anchor, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(alice.onPremName, `${NETBIOS}\\${adUsers.ok}`);
    assert.equal(alice.dn, dc.dn(adUsers.ok));
    assert.equal(alice.mail, `${adUsers.ok}.mail@${REALM}`);
    assert.equal(alice.enabled, true);
    assert.equal(by.get(dc.upn(adUsers.disabled))?.enabled, false);
    assert.equal(by.get(dc.upn(adUsers.mustChange))?.enabled, true, 'must-change is not disabled');
    assert.equal(new Set(r.users.map((u) => u.anchor)).size, r.users.length);
    // The synced onPremName is a name the agent can bind with.
    const v = await d.validate({ dn: '', upn: '', onPremName: alice.onPremName }, USER_PASSWORD);
    assert.equal(v.outcome, 'success');
  } finally {
    await d.close();
  }
});

test('a configured netbiosDomain wins over the directory', async () => {
  const d = new Directory(fx.cfg({ netbiosDomain: 'OTHER' }), { backgroundProbe: false });
  try {
    const r = await collectUsers(d, 100);
    assert.equal(r.users.find((u) => u.upn === dc.upn(adUsers.ok))?.onPremName, `OTHER\\${adUsers.ok}`);
  } finally {
    await d.close();
  }
});

test('lockout policy: lockoutThreshold and lockoutDuration of the domain object, "until unlocked" as 0', async () => {
  const d = new Directory(fx.cfg(), { backgroundProbe: false });
  try {
    assert.deepEqual(await d.refreshLockoutPolicy(), { threshold: AD_LOCKOUT_THRESHOLD, durationS: 1800 });
    assert.deepEqual((await d.probe()).lockoutPolicy, { threshold: AD_LOCKOUT_THRESHOLD, durationS: 1800 });
    await dc.tool('domain', 'passwordsettings', 'set', '--account-lockout-duration=0');
    assert.equal(
      (await d.refreshLockoutPolicy()).durationS,
      0,
      `stored lockoutDuration ${await domainAttr('lockoutDuration')}`,
    );
    await dc.tool('domain', 'passwordsettings', 'set', '--account-lockout-threshold=0');
    assert.deepEqual(await d.refreshLockoutPolicy(), { threshold: 0, durationS: 0 });
  } finally {
    await d.close();
  }
});

const domainAttr = async (name: string) => {
  const { stdout } = await promisify(execFile)('ldapsearch', [
    '-LLL',
    '-x',
    '-H',
    dc.url,
    '-D',
    dc.adminUpn,
    '-w',
    dc.adminPassword,
    '-b',
    BASE_DN,
    '-s',
    'base',
    name,
  ]);
  return new RegExp(`^${name}: (.*)$`, 'm').exec(stdout)?.[1];
};
