/**
 * AD memberships from tokenGroups with several reads in flight over one or two connections: the same map as
 * one read at a time (users' order, security groups by SID, distribution groups from the member
 * lists), never more reads in flight than asked, and none started after one failed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SyncedGroup } from '@gatehouse/protocol';
import type { Client } from 'ldapts';
import { tokenGroupMemberships } from '../src/directory/groups.ts';

const sid = (rid: number) => {
  const b = Buffer.alloc(8 + 4 * 5);
  b[0] = 1;
  b[1] = 5;
  b.writeUIntBE(5, 2, 6);
  for (const [i, x] of [21, 1, 2, 3, rid].entries()) b.writeUInt32LE(x, 8 + 4 * i);
  return b;
};
const sidString = (rid: number) => `S-1-5-21-1-2-3-${rid}`;

const groups: SyncedGroup[] = [
  { anchor: 'g1', name: 'g1', dn: 'CN=g1', security: true, sid: sidString(1001) },
  { anchor: 'g2', name: 'g2', dn: 'CN=g2', security: true, sid: sidString(1002) },
  { anchor: 'd1', name: 'd1', dn: 'CN=d1', security: false, sid: sidString(1003) },
];

/** A client whose answers come back out of order (later users first), counting reads in flight. */
const fakeClient = (tokens: Map<string, Buffer[]>, opts: { failOn?: string } = {}) => {
  const seen: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let atFailure = -1;
  const client = {
    async search(dn: string) {
      seen.push(dn);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 5 - (seen.length % 5)));
      inFlight--;
      if (dn === opts.failOn) {
        atFailure = seen.length;
        throw new Error('Busy');
      }
      const tg = tokens.get(dn);
      return { searchEntries: tg ? [{ dn, tokenGroups: tg.length === 1 ? tg[0] : tg }] : [] };
    },
  };
  return { client: client as unknown as Client, seen, max: () => maxInFlight, atFailure: () => atFailure };
};

const users = new Map(Array.from({ length: 20 }, (_, i) => [`cn=u${i}`, `a${i}`]));
const tokens = new Map(
  [...users.keys()].map((dn, i) => [dn, i % 3 === 0 ? [sid(1001)] : [sid(1001), sid(1002), sid(9999)]]),
);
tokens.delete('cn=u7');
const local = new Map([
  ['a1', ['d1', 'g1']],
  ['a7', ['d1']],
]);

test('several reads in flight give the map one at a time gives, in the users order', async () => {
  const one = await tokenGroupMemberships([fakeClient(tokens).client], groups, users, local, 1);
  const f = fakeClient(tokens);
  const four = await tokenGroupMemberships([f.client], groups, users, local, 4);
  assert.deepEqual([...four], [...one]);
  assert.deepEqual([...four.keys()], [...users.values()]);
  assert.deepEqual(four.get('a0'), ['g1']);
  assert.deepEqual(four.get('a1'), ['g1', 'g2', 'd1'], 'distribution groups from the member lists');
  assert.deepEqual(four.get('a7'), ['d1'], 'no entry: only the distribution groups');
  assert.equal(f.max(), 4);
  assert.equal(f.seen.length, users.size, 'each user read once');
  const [a, b] = [fakeClient(tokens), fakeClient(tokens)];
  assert.deepEqual(
    [...(await tokenGroupMemberships([a.client, b.client], groups, users, local, 4))],
    [...one],
  );
  assert.equal(a.seen.length + b.seen.length, users.size);
  assert.ok(a.max() === 2 && b.max() === 2, 'the reads in flight are spread over the connections');
});

test('no more reads in flight than users, and none for no users', async () => {
  const f = fakeClient(tokens);
  const two = new Map([...users].slice(0, 2));
  assert.equal((await tokenGroupMemberships([f.client], groups, two, local, 8)).size, 2);
  assert.equal(f.max(), 2);
  assert.equal((await tokenGroupMemberships([f.client], groups, new Map(), local, 8)).size, 0);
});

test('a failed read fails the whole, and no read starts after it', async () => {
  const f = fakeClient(tokens, { failOn: 'cn=u5' });
  await assert.rejects(tokenGroupMemberships([f.client], groups, users, local, 4), /Busy/);
  // Reads already in flight when it failed may finish; none is asked for after it.
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(f.atFailure() > 0);
  assert.equal(f.seen.length, f.atFailure());
  assert.ok(f.seen.length < users.size);
});
