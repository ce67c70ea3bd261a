/**
 * Pure parts of delta group membership (which groups a change affects, the walk down to their
 * users) and of the just-in-time look-up (the filter a typed name becomes, and which mapped user
 * it denotes).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DirectoryConfig } from '../src/config.ts';
import { affectedGroups, LOOKUP_BATCH, scanAfterFor, walkDown } from '../src/directory/group-delta.ts';
import { type GroupEntry, normDn } from '../src/directory/groups.ts';
import { denotes, lookupFilter } from '../src/lookup.ts';

const g = (cn: string, members: string[]): GroupEntry => ({
  group: { anchor: cn, name: cn, dn: `cn=${cn},ou=groups,dc=x`, security: true },
  members,
});
const dn = (cn: string) => `CN=${cn}, OU=groups, DC=x`;
// Top ⊃ Mid ⊃ Leaf ⊃ ann; Top ⊃ bob; Other ⊃ cat; Loop1 ⊃ Loop2 ⊃ Loop1 ⊃ dan.
const entries = [
  g('Top', [dn('Mid'), 'uid=bob,ou=people,dc=x']),
  g('Mid', [dn('Leaf')]),
  g('Leaf', ['uid=ann,ou=people,dc=x']),
  g('Other', ['uid=cat,ou=people,dc=x']),
  g('Loop1', [dn('Loop2'), 'uid=dan,ou=people,dc=x']),
  g('Loop2', [dn('Loop1')]),
];
const names = (xs: GroupEntry[]) => xs.map((x) => x.group.name).sort();

test('a changed group affects itself and every group above it, not its members or its siblings', () => {
  assert.deepEqual(names(affectedGroups(entries, new Set(['Leaf']))), ['Leaf', 'Mid', 'Top']);
  assert.deepEqual(names(affectedGroups(entries, new Set(['Top']))), ['Top']);
  assert.deepEqual(names(affectedGroups(entries, new Set(['Loop2']))), ['Loop1', 'Loop2'], 'a cycle ends');
  assert.deepEqual(affectedGroups(entries, new Set(['gone'])), []);
});

test('the walk down finds the users at any depth, with DNs normalised, and ends cycles', () => {
  const byDn = new Map(entries.map((x) => [normDn(x.group.dn), x]));
  const top = walkDown(entries[0]!, byDn);
  assert.deepEqual([...top.userDns].sort(), ['uid=ann,ou=people,dc=x', 'uid=bob,ou=people,dc=x']);
  assert.deepEqual(names(top.groups), ['Leaf', 'Mid', 'Top']);
  assert.deepEqual([...walkDown(entries[5]!, byDn).userDns], ['uid=dan,ou=people,dc=x']);
});

const ad = { kind: 'ad', userFilter: '(&(objectClass=user)(!(objectClass=computer)))' } as DirectoryConfig;
const ldap = {
  kind: 'openldap',
  userFilter: '(objectClass=inetOrgPerson)',
  upnAttribute: 'uid',
  upnDomain: 'example.test',
} as DirectoryConfig;

test('a typed name becomes a filter by its form, with the value escaped', () => {
  assert.equal(
    lookupFilter(ad, 'ann@corp.example'),
    `(&${ad.userFilter}(|(userPrincipalName=ann@corp.example)(mail=ann@corp.example)))`,
  );
  assert.equal(lookupFilter(ad, 'CORP\\ann'), `(&${ad.userFilter}(|(sAMAccountName=ann)))`);
  assert.equal(
    lookupFilter(ad, 'a*)(uid=*'),
    `(&${ad.userFilter}(|(userPrincipalName=a\\2a\\29\\28uid=\\2a)(mail=a\\2a\\29\\28uid=\\2a)))`,
  );
  assert.equal(
    lookupFilter(ldap, 'ann@example.test'),
    `(&${ldap.userFilter}(|(uid=ann@example.test)(mail=ann@example.test)(uid=ann)))`,
  );
  assert.equal(lookupFilter(ldap, 'EXAMPLE\\ann'), `(&${ldap.userFilter}(|(uid=ann)))`);
});

test('only the user the name denotes is taken', () => {
  const u = {
    anchor: 'a',
    upn: 'ann@corp.example',
    mail: 'Ann.Lee@corp.example',
    onPremName: 'CORP\\ann',
    dn: 'x',
    enabled: true,
  };
  assert.ok(denotes(u, 'ANN@corp.example'));
  assert.ok(denotes(u, 'ann.lee@corp.example'));
  assert.ok(denotes(u, 'corp\\ann'));
  assert.ok(!denotes(u, 'other\\ann'), 'another domain');
  assert.ok(!denotes(u, 'ann'));
  assert.ok(denotes({ ...u, onPremName: 'ann' }, 'EXAMPLE\\ann'), 'OpenLDAP: uid');
});

test('member anchors are read by one scan only past a third of the known users', () => {
  assert.equal(scanAfterFor(undefined), Number.POSITIVE_INFINITY, 'no full run yet: never');
  assert.equal(scanAfterFor(3000), 1000);
  assert.equal(scanAfterFor(90), LOOKUP_BATCH, 'a small directory: not below one search');
});
