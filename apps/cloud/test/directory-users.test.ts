import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isGatehouseError, type SyncedUser } from '@gatehouse/protocol';
import { clientSecretMatches, hashClientSecret } from '../src/db/at-rest.ts';
import { createClient, getClient, listClients } from '../src/store/clients.ts';
import { verifyPassword } from '../src/store/password.ts';
import { createTenant } from '../src/store/tenants.ts';
import {
  createCloudUser,
  deleteSyncedUsersByAnchor,
  findByLogin,
  finishSyncRun,
  getUser,
  listUsers,
  setCloudPassword,
  upsertSyncedUsers,
} from '../src/store/users.ts';
import { openTestState, type TestState } from './directory-fixtures.ts';

let s: TestState;
before(async () => {
  s = await openTestState();
});
after(() => s.cleanup());

/** What a deletion did, without the ids of the users it deleted. */
const outcome = ({ deleted, deletionGuarded }: { deleted: number; deletionGuarded: boolean }) => ({
  deleted,
  deletionGuarded,
});
const code = (c: string) => (err: unknown) => isGatehouseError(err) && err.code === c;
const tenant = async (domain: string) =>
  (
    await createTenant(s.ctx, {
      name: domain,
      domain,
      admin: { upn: `admin@${domain}`, password: 'Break-glass-pw-1' },
    })
  ).tenantId;
const synced = (n: number, over: Partial<SyncedUser> = {}): SyncedUser => ({
  anchor: `anchor-${n}`,
  upn: `user${n}@contoso.com`,
  dn: `CN=User ${n},OU=Staff,DC=contoso,DC=com`,
  onPremName: `CONTOSO\\user${n}`,
  displayName: `User ${n}`,
  mail: `User${n}@Contoso.com`,
  enabled: true,
  ...over,
});

test('sync upserts by source anchor: a UPN change or an OU move updates the same user', async () => {
  const t = await tenant('contoso.com');
  const first = await upsertSyncedUsers(s.ctx.db, t, [synced(1), synced(2)]);
  assert.deepEqual([first.created, first.updated, first.skipped], [2, 0, 0]);
  const before1 = await findByLogin(s.ctx.db, t, 'USER1@contoso.com', 'upn');
  assert.equal(before1?.source, 'synced');
  assert.equal(before1?.mail, 'user1@contoso.com');
  assert.equal(before1?.passwordHash, null);

  const moved = synced(1, {
    upn: 'alice.renamed@contoso.com',
    dn: 'CN=User 1,OU=Moved,DC=contoso,DC=com',
    enabled: false,
  });
  const second = await upsertSyncedUsers(s.ctx.db, t, [moved, synced(2)]);
  assert.deepEqual([second.created, second.updated, second.skipped], [0, 1, 0]);
  assert.equal(await findByLogin(s.ctx.db, t, 'user1@contoso.com', 'upn'), null);
  const after1 = await findByLogin(s.ctx.db, t, 'alice.renamed@contoso.com', 'upn');
  assert.equal(after1?.id, before1?.id, 'same row');
  assert.equal(after1?.onPremDn, 'CN=User 1,OU=Moved,DC=contoso,DC=com');
  assert.equal(after1?.enabled, false);

  // A synced UPN equal to a cloud-only account's is skipped, never merged into it.
  const takeover = await upsertSyncedUsers(s.ctx.db, t, [synced(9, { upn: 'admin@contoso.com' })]);
  assert.deepEqual([takeover.created, takeover.skipped, takeover.skippedUpns], [0, 1, ['admin@contoso.com']]);
  assert.equal((await findByLogin(s.ctx.db, t, 'admin@contoso.com', 'upn'))?.source, 'cloud');
});

test('one page is decided in order: a UPN freed or taken earlier in the page counts, an anchor listed twice updates', async () => {
  const t = await tenant('tailspin.com');
  const u = (n: number, over: Partial<SyncedUser> = {}) =>
    synced(n, { upn: `user${n}@tailspin.com`, mail: `user${n}@tailspin.com`, ...over });
  await upsertSyncedUsers(s.ctx.db, t, [u(1), u(2)]);
  const r = await upsertSyncedUsers(s.ctx.db, t, [
    // user1 renamed: its old UPN is free for the new user 3 in the same page.
    u(1, { upn: 'first@tailspin.com' }),
    u(3, { upn: 'user1@tailspin.com' }),
    // The new user 4 takes a UPN that the new user 5, later in the page, wants too.
    u(4, { upn: 'shared@tailspin.com' }),
    u(5, { upn: 'shared@tailspin.com' }),
    // user2 unchanged, then listed again changed: the second entry applies.
    u(2),
    u(2, { displayName: 'Second entry' }),
    // A new user listed twice: inserted once, with the later entry's fields.
    u(6),
    u(6, { displayName: 'Six again', enabled: false }),
  ]);
  assert.deepEqual(
    [r.created, r.updated, r.skipped, r.skippedUpns],
    [3, 3, 1, ['shared@tailspin.com']],
    'users 3, 4, 6 created; 1, 2 and the second 6 updated; 5 skipped',
  );
  const by = async (upn: string) => findByLogin(s.ctx.db, t, upn, 'upn');
  assert.equal((await by('first@tailspin.com'))?.sourceAnchor, 'anchor-1');
  assert.equal((await by('user1@tailspin.com'))?.sourceAnchor, 'anchor-3');
  assert.equal((await by('shared@tailspin.com'))?.sourceAnchor, 'anchor-4');
  assert.equal((await by('user2@tailspin.com'))?.displayName, 'Second entry');
  const six = await by('user6@tailspin.com');
  assert.deepEqual([six?.displayName, six?.enabled], ['Six again', false]);
  const listed = await listUsers(s.ctx.db, t, { limit: 100 });
  assert.equal(listed.users.filter((x) => x.source === 'synced').length, 5);
});

test('deletions above the threshold are guarded; below it, or forced, they apply', async () => {
  const t = await tenant('fabrikam.com');
  const users = Array.from({ length: 10 }, (_, i) => synced(i, { upn: `u${i}@fabrikam.com` }));
  await upsertSyncedUsers(s.ctx.db, t, users);
  const all = users.map((u) => u.anchor);

  // 3 of 10 missing (30% > 20%): nothing is deleted.
  const guarded = await finishSyncRun(s.ctx.db, t, all.slice(3));
  assert.deepEqual(outcome(guarded), { deleted: 0, deletionGuarded: true });
  assert.equal((await listUsers(s.ctx.db, t)).users.length, 11);

  // 2 of 10 (20%, not above): deleted.
  assert.deepEqual(outcome(await finishSyncRun(s.ctx.db, t, all.slice(2))), {
    deleted: 2,
    deletionGuarded: false,
  });
  assert.equal(await findByLogin(s.ctx.db, t, 'u0@fabrikam.com', 'upn'), null);
  // An administrator can force a large deletion; cloud-only users are never touched by sync.
  assert.deepEqual(outcome(await finishSyncRun(s.ctx.db, t, [], { force: true })), {
    deleted: 8,
    deletionGuarded: false,
  });
  const left = await listUsers(s.ctx.db, t);
  assert.deepEqual(
    left.users.map((u) => u.upn),
    ['admin@fabrikam.com'],
  );
  assert.deepEqual(outcome(await finishSyncRun(s.ctx.db, t, [])), { deleted: 0, deletionGuarded: false });
});

test('a delta run deletes only the anchors it names, behind the same guard', async () => {
  const t = await tenant('contoso.org');
  const users = Array.from({ length: 10 }, (_, i) => synced(i, { upn: `d${i}@contoso.org` }));
  await upsertSyncedUsers(s.ctx.db, t, users);
  const all = users.map((u) => u.anchor);
  const guarded = await deleteSyncedUsersByAnchor(s.ctx.db, t, all.slice(0, 3));
  assert.deepEqual(outcome(guarded), { deleted: 0, deletionGuarded: true }, '3 of 10 named: above 20 %');
  const two = await deleteSyncedUsersByAnchor(s.ctx.db, t, [...all.slice(0, 2), 'not-a-known-anchor']);
  assert.deepEqual(outcome(two), { deleted: 2, deletionGuarded: false }, 'nothing by absence');
  assert.equal(two.deletedIds.length, 2);
  assert.equal((await listUsers(s.ctx.db, t)).users.length, 9, 'the admin and the 8 not named');
  // A page that disables a user reports it, so its grants can be revoked.
  const off = await upsertSyncedUsers(s.ctx.db, t, [{ ...users[5]!, enabled: false }]);
  assert.equal(off.disabledIds.length, 1);
  assert.equal(
    (await upsertSyncedUsers(s.ctx.db, t, [{ ...users[5]!, enabled: false }])).disabledIds.length,
    0,
  );
});

test('login by UPN or by mail (alternate login ID); list with search and paging', async () => {
  const t = await tenant('northwind.com');
  await upsertSyncedUsers(s.ctx.db, t, [
    synced(1, { upn: 'n1@corp.northwind.local', mail: 'Nancy@Northwind.com', displayName: 'Nancy Davolio' }),
    synced(2, { upn: 'n2@corp.northwind.local', mail: 'shared@northwind.com', displayName: 'Andrew Fuller' }),
    synced(3, {
      upn: 'n3@corp.northwind.local',
      mail: 'shared@northwind.com',
      displayName: 'Janet_Leverling',
    }),
  ]);
  assert.equal(await findByLogin(s.ctx.db, t, 'nancy@northwind.com', 'upn'), null);
  assert.equal(
    (await findByLogin(s.ctx.db, t, ' NANCY@northwind.com ', 'mail'))?.upn,
    'n1@corp.northwind.local',
  );
  assert.equal(
    (await findByLogin(s.ctx.db, t, 'n2@corp.northwind.local', 'mail'))?.upn,
    'n2@corp.northwind.local',
  );
  assert.equal(
    await findByLogin(s.ctx.db, t, 'shared@northwind.com', 'mail'),
    null,
    'ambiguous mail matches nobody',
  );

  assert.deepEqual(
    (await listUsers(s.ctx.db, t, { search: 'andrew' })).users.map((u) => u.upn),
    ['n2@corp.northwind.local'],
  );
  assert.deepEqual((await listUsers(s.ctx.db, t, { search: 'janet_' })).users.length, 1);
  assert.deepEqual((await listUsers(s.ctx.db, t, { search: 'n_' })).users.length, 0, 'wildcards are literal');
  const p1 = await listUsers(s.ctx.db, t, { limit: 2 });
  assert.equal(p1.users.length, 2);
  assert.ok(p1.nextCursor);
  const p2 = await listUsers(s.ctx.db, t, { limit: 2, cursor: p1.nextCursor! });
  assert.deepEqual(
    [...p1.users, ...p2.users].map((u) => u.upn),
    ['admin@northwind.com', 'n1@corp.northwind.local', 'n2@corp.northwind.local', 'n3@corp.northwind.local'],
  );
  assert.equal(p2.nextCursor, null);
});

test('cloud users: creation, duplicate UPN, password change; synced users have no cloud password', async () => {
  const t = await tenant('litware.com');
  const u = await createCloudUser(s.ctx.db, t, {
    upn: 'Helpdesk@Litware.com',
    password: 'Initial-pw-1',
    roles: ['user_admin'],
  });
  assert.equal(u.upn, 'helpdesk@litware.com');
  assert.equal('passwordHash' in u, false);
  await assert.rejects(
    createCloudUser(s.ctx.db, t, { upn: 'helpdesk@litware.com', password: 'Another-pw-1' }),
    code('conflict'),
  );
  await assert.rejects(
    createCloudUser(s.ctx.db, t, { upn: 'x@litware.com', password: 'short' }),
    code('validation_failed'),
  );
  await assert.rejects(
    createCloudUser(s.ctx.db, t, {
      upn: 'x@litware.com',
      password: 'Long-enough-1',
      roles: ['god'] as never,
    }),
    code('validation_failed'),
  );
  await setCloudPassword(s.ctx.db, t, u.id, 'Changed-pw-2');
  const rec = await findByLogin(s.ctx.db, t, 'helpdesk@litware.com', 'upn');
  assert.equal(await verifyPassword('Changed-pw-2', rec!.passwordHash!), true);
  assert.equal(await verifyPassword('Initial-pw-1', rec!.passwordHash!), false);

  await upsertSyncedUsers(s.ctx.db, t, [synced(1, { upn: 'sync@litware.com' })]);
  const sy = await findByLogin(s.ctx.db, t, 'sync@litware.com', 'upn');
  await assert.rejects(setCloudPassword(s.ctx.db, t, sy!.id, 'Whatever-pw-1'), code('conflict'));
  assert.equal(await getUser(s.ctx.db, 'other-tenant', u.id), null, 'users are scoped to their tenant');
});

test('clients: confidential and public metadata for oidc-provider', async () => {
  const t = await tenant('adatum.com');
  const conf = await createClient(s.ctx.db, t, {
    name: 'Portal',
    redirectUris: ['https://portal.adatum.com/cb'],
  });
  assert.ok(conf.clientSecret && conf.clientSecret.length >= 43);
  const got = await getClient(s.ctx.db, conf.clientId);
  assert.equal(got?.tenantId, t);
  assert.deepEqual(got?.metadata, {
    client_id: conf.clientId,
    client_secret: hashClientSecret(conf.clientSecret),
    client_name: 'Portal',
    redirect_uris: ['https://portal.adatum.com/cb'],
    post_logout_redirect_uris: [],
    gatehouse_admin_roles: [],
    gatehouse_first_party: true,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  });
  const row = await s.ctx.db
    .selectFrom('clients')
    .select('metadata')
    .where('client_id', '=', conf.clientId)
    .executeTakeFirstOrThrow();
  assert.equal(row.metadata.includes(conf.clientSecret), false, 'only a hash of the secret is stored');
  assert.equal(clientSecretMatches(conf.clientSecret, got?.metadata.client_secret), true);
  assert.equal(clientSecretMatches(`${conf.clientSecret}x`, got?.metadata.client_secret), false);
  assert.equal(
    clientSecretMatches(got?.metadata.client_secret, got?.metadata.client_secret),
    false,
    'the hash is not the secret',
  );
  const pub = await createClient(s.ctx.db, t, {
    name: 'Mail app',
    redirectUris: ['http://127.0.0.1/cb'],
    public: true,
    grantTypes: ['authorization_code', 'password'],
  });
  assert.equal(pub.clientSecret, undefined);
  const pm = (await getClient(s.ctx.db, pub.clientId))!.metadata;
  assert.equal(pm.token_endpoint_auth_method, 'none');
  assert.deepEqual(pm.grant_types, ['authorization_code', 'password']);
  const listed = await listClients(s.ctx.db, t);
  assert.equal(listed.length, 2);
  assert.equal(JSON.stringify(listed).includes(conf.clientSecret!), false, 'secrets are not listed');
  assert.equal(await getClient(s.ctx.db, 'nope'), null);
  await assert.rejects(
    createClient(s.ctx.db, t, { name: 'No redirect', redirectUris: [] }),
    code('validation_failed'),
  );
  await assert.rejects(
    createClient(s.ctx.db, t, {
      name: 'Bad grant',
      redirectUris: ['https://a.b/c'],
      grantTypes: ['implicit'] as never,
    }),
    code('validation_failed'),
  );
});
