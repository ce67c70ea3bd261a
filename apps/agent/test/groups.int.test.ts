/**
 * Group sync against a real slapd: groupOfNames and groupOfUniqueNames, nesting three deep, a
 * membership cycle (which must end), entryUUID anchors, and the pages the agent would send.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MAX_FRAME_BYTES, SyncPage } from '@gatehouse/protocol';
import { type SlapdInstance, startSlapd } from '../../../test/harness/slapd.ts';
import { loadAgentConfig } from '../src/config.ts';
import { groupMembersNow } from '../src/directory/group-delta.ts';
import {
  escapeFilterValue,
  isSecurityGroup,
  readGroupEntries,
  resolveNested,
  sidToString,
} from '../src/directory/groups.ts';
import { Directory } from '../src/directory/index.ts';
import { chunk, collectUsers } from '../src/sync.ts';

let slapd: SlapdInstance;
let tmp: string;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

before(async () => {
  slapd = await startSlapd({
    users: ['ann', 'ben', 'cat', 'dan'].map((uid) => ({
      uid,
      password: 'pw-not-used-1',
      mail: `${uid}@example.test`,
    })),
  });
  const p = (u: string) => `uid=${u},${slapd.peopleDn}`;
  const g = (cn: string) => `cn=${cn},ou=groups,${slapd.baseDn}`;
  // Finance ⊃ Ledger ⊃ Auditors ⊃ ann; Loop1 ⊃ Loop2 ⊃ Loop1 (a cycle) with ben; Board is
  // groupOfUniqueNames with cat (and a unique-id suffix on the value).
  await slapd.ldapModify(
    [
      `dn: ou=groups,${slapd.baseDn}\nobjectClass: organizationalUnit\nou: groups\n`,
      `dn: ${g('Auditors')}\nobjectClass: groupOfNames\ncn: Auditors\nmember: ${p('ann')}\n`,
      `dn: ${g('Ledger')}\nobjectClass: groupOfNames\ncn: Ledger\nmember: ${g('Auditors')}\nmember: ${p('dan')}\n`,
      `dn: ${g('Finance')}\nobjectClass: groupOfNames\ncn: Finance\ndescription: money\nmember: ${g('Ledger')}\n`,
      `dn: ${g('Loop1')}\nobjectClass: groupOfNames\ncn: Loop1\nmember: ${p('ben')}\n`,
      `dn: ${g('Loop2')}\nobjectClass: groupOfNames\ncn: Loop2\nmember: ${g('Loop1')}\n`,
      `dn: ${g('Loop1')}\nchangetype: modify\nadd: member\nmember: ${g('Loop2')}\n`,
      `dn: ${g('Board')}\nobjectClass: groupOfUniqueNames\ncn: Board\nuniqueMember: ${p('cat')}#'0101'B\n`,
      '',
    ].join('\n'),
  );
  tmp = mkdtempSync(join(tmpdir(), 'gh-agent-groups-'));
  writeFileSync(join(tmp, 'svc.pw'), slapd.servicePassword, { mode: 0o600 });
});

after(async () => {
  await slapd?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const directory = (extra: Record<string, unknown> = {}) => {
  const cfg = loadAgentConfig({
    env: {},
    overrides: {
      stateDir: tmp,
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPasswordFile: join(tmp, 'svc.pw'),
        baseDns: [slapd.peopleDn],
        groupBaseDns: [`ou=groups,${slapd.baseDn}`],
        ...extra,
      },
    },
  });
  return new Directory(cfg.directory);
};

test('nested groupOfNames and groupOfUniqueNames memberships are resolved, a cycle ends', async () => {
  const dir = directory();
  try {
    const r = await collectUsers(dir, 2);
    const groups = new Map(r.groups!.map((g) => [g.name, g]));
    assert.deepEqual([...groups.keys()].sort(), ['Auditors', 'Board', 'Finance', 'Ledger', 'Loop1', 'Loop2']);
    for (const g of groups.values()) {
      assert.match(g.anchor, UUID, 'entryUUID anchor');
      assert.equal(g.security, true);
    }
    assert.equal(groups.get('Finance')!.description, 'money');
    const of = (uid: string) =>
      r.users
        .find((u) => u.upn === `${uid}@example.test`)!
        .groups!.map((a) => r.groups!.find((g) => g.anchor === a)!.name)
        .sort();
    assert.deepEqual(of('ann'), ['Auditors', 'Finance', 'Ledger'], 'three levels deep');
    assert.deepEqual(of('dan'), ['Finance', 'Ledger']);
    assert.deepEqual(of('ben'), ['Loop1', 'Loop2'], 'the cycle is walked once');
    assert.deepEqual(of('cat'), ['Board'], "uniqueMember's #'...'B suffix is ignored");

    // The pages the agent sends parse as the cloud parses them, groups pages before users.
    const pages = chunk(r.groups!, 2, MAX_FRAME_BYTES - 1024);
    for (const [seq, g] of pages.entries()) {
      const msg = { type: 'sync.page', runId: 'r', mode: 'full', seq, groups: g, users: [], final: false };
      assert.ok(SyncPage.safeParse(msg).success);
      assert.ok(Buffer.byteLength(JSON.stringify(msg)) < MAX_FRAME_BYTES);
    }
    assert.ok(
      SyncPage.safeParse({ type: 'sync.page', runId: 'r', mode: 'full', seq: 9, users: r.users, final: true })
        .success,
    );
  } finally {
    await dir.close();
  }
});

test("a delta's member lists: the changed group and those above it, by lookup or by scan alike", async () => {
  const dir = directory();
  try {
    const full = await collectUsers(dir, 100);
    const byName = new Map(full.groups!.map((g) => [g.name, g.anchor]));
    const anchorOf = new Map(full.users.map((u) => [u.anchor, u.upn.split('@')[0]]));
    const lists = await dir.withServiceClient(async (client) => {
      const read = await readGroupEntries(client, dir.cfg, { pageSize: 100 });
      const changed = new Set([byName.get('Auditors')!]);
      return [
        await groupMembersNow(client, dir.cfg, read.entries, changed),
        await groupMembersNow(client, dir.cfg, read.entries, changed, 0),
      ];
    });
    for (const m of lists) {
      const named = Object.fromEntries(
        [...m].map(([g, users]) => [
          full.groups!.find((x) => x.anchor === g)!.name,
          users.map((a) => anchorOf.get(a)).sort(),
        ]),
      );
      assert.deepEqual(named, { Auditors: ['ann'], Ledger: ['ann', 'dan'], Finance: ['ann', 'dan'] });
    }
  } finally {
    await dir.close();
  }
});

test('with syncGroups off no groups are read and users carry no list', async () => {
  const dir = directory({ syncGroups: false });
  try {
    const r = await collectUsers(dir, 10);
    assert.equal(r.groups, undefined);
    assert.ok(r.users.every((u) => u.groups === undefined));
  } finally {
    await dir.close();
  }
});

test('resolveNested ends on a self-containing group and on long cycles', () => {
  const users = new Map([['uid=u,o=x', 'U']]);
  const groups = [
    { anchor: 'A', dn: 'cn=a,o=x', members: ['cn=a,o=x', 'uid=u,o=x', 'cn=c,o=x'] },
    { anchor: 'B', dn: 'cn=b,o=x', members: ['CN=A, O=X'] },
    { anchor: 'C', dn: 'cn=c,o=x', members: ['cn=b,o=x'] },
  ];
  assert.deepEqual(resolveNested(groups, users).get('U')!.sort(), ['A', 'B', 'C']);
});

test('AD helpers: groupType security bit, SID string form, filter escaping', () => {
  assert.equal(isSecurityGroup(-2147483646), true, 'global security group');
  assert.equal(isSecurityGroup(2), false, 'global distribution group');
  // S-1-5-21-1-2-3-512
  const sid = Buffer.from('010500000000000515000000010000000200000003000000' + '00020000', 'hex');
  assert.equal(sidToString(sid), 'S-1-5-21-1-2-3-512');
  assert.equal(sidToString(Buffer.from('0105', 'hex')), undefined);
  assert.equal(escapeFilterValue('CN=a (b)*\\c'), 'CN=a \\28b\\29\\2a\\5cc');
});
