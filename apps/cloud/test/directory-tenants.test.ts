import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isGatehouseError } from '@gatehouse/protocol';
import { addDomain, listDomains, setDomainKind, verifyDomain } from '../src/store/domains.ts';
import { createTenant, getTenant, getTenantSecrets, updateSettings } from '../src/store/tenants.ts';
import { getUser } from '../src/store/users.ts';
import { openTestState, type TestState } from './directory-fixtures.ts';

let s: TestState;
before(async () => {
  s = await openTestState();
});
after(() => s.cleanup());

const code = (c: string) => (err: unknown) => isGatehouseError(err) && err.code === c;
const newTenant = (domain: string) =>
  createTenant(s.ctx, {
    name: `Tenant ${domain}`,
    domain,
    admin: { upn: `admin@${domain}`, password: 'Break-glass-pw-1' },
  });

test('a new tenant has its admin, an unverified managed domain, and sealed keys only', async () => {
  const { tenantId, adminUserId } = await newTenant('contoso.com');
  const t = await getTenant(s.ctx.db, tenantId);
  assert.equal(t.ptaEnabled, false);
  assert.equal(t.legacyAuth, false);
  assert.equal(t.jitUsers, false, 'just-in-time users are off by default');
  assert.equal(t.loginAttribute, 'upn');
  assert.match(t.caCertPem, /BEGIN CERTIFICATE/);

  const admin = await getUser(s.ctx.db, tenantId, adminUserId);
  assert.equal(admin?.upn, 'admin@contoso.com');
  assert.equal(admin?.source, 'cloud');
  assert.deepEqual(admin?.roles, ['global_admin']);

  const [d] = await listDomains(s.ctx.db, tenantId);
  assert.equal(d?.name, 'contoso.com');
  assert.equal(d?.kind, 'managed');
  assert.equal(d?.verified, false);
  assert.equal(d?.txtRecord, `gatehouse-verify=${d?.verificationCode}`);

  const secrets = await getTenantSecrets(s.ctx, tenantId);
  assert.match(secrets.caKeyPem, /BEGIN PRIVATE KEY/);
  const [jwk] = secrets.jwks.keys;
  assert.equal(jwk?.alg, 'ES256');
  assert.equal(jwk?.use, 'sig');
  assert.ok(jwk?.kid && jwk.d, 'private signing JWK with a kid');
  assert.equal(secrets.cookieKeys.length, 2);

  // The database file holds none of it in the clear.
  const bytes = s.dbBytes();
  assert.equal(bytes.includes('PRIVATE KEY'), false);
  const keyBody = secrets.caKeyPem.split('\n')[1]!;
  assert.equal(bytes.includes(keyBody), false);
  assert.equal(bytes.includes(jwk!.d!), false);
  for (const k of secrets.cookieKeys) assert.equal(bytes.includes(k), false);
  assert.equal(bytes.includes('Break-glass-pw-1'), false);
});

test('a domain belongs to one tenant only', async () => {
  await newTenant('fabrikam.com');
  await assert.rejects(newTenant('fabrikam.com'), code('conflict'));
  const other = await newTenant('northwind.com');
  await assert.rejects(addDomain(s.ctx.db, other.tenantId, 'FABRIKAM.com'), code('conflict'));
  await assert.rejects(addDomain(s.ctx.db, other.tenantId, 'not a domain'), code('validation_failed'));
  const added = await addDomain(s.ctx.db, other.tenantId, 'Sub.Northwind.com');
  assert.equal(added.name, 'sub.northwind.com');
});

test('domain verification needs the TXT record (or the operator force)', async () => {
  const { tenantId } = await newTenant('adatum.com');
  const [d] = await listDomains(s.ctx.db, tenantId);
  const published: string[][] = [['v=spf1 -all']];
  const resolveTxt = async (name: string) => {
    assert.equal(name, 'adatum.com');
    return published;
  };
  await assert.rejects(verifyDomain(s.ctx.db, tenantId, 'adatum.com', { resolveTxt }), (err) => {
    assert.ok(isGatehouseError(err) && err.code === 'conflict');
    assert.equal((err.detail as { publish: string }).publish, d!.txtRecord);
    return true;
  });
  // Long TXT values arrive in chunks; they count as one.
  published.push([d!.txtRecord.slice(0, 10), d!.txtRecord.slice(10)]);
  assert.equal((await verifyDomain(s.ctx.db, tenantId, 'adatum.com', { resolveTxt })).verified, true);

  await addDomain(s.ctx.db, tenantId, 'adatum.net');
  const forced = await verifyDomain(s.ctx.db, tenantId, 'adatum.net', {
    force: true,
    resolveTxt: async () => assert.fail('no lookup when forced'),
  });
  assert.equal(forced.verified, true);
  // Another tenant cannot verify (or even see) this tenant's domain.
  const other = await newTenant('woodgrove.com');
  await assert.rejects(
    verifyDomain(s.ctx.db, other.tenantId, 'adatum.net', { force: true }),
    code('not_found'),
  );

  const fed = await setDomainKind(s.ctx.db, tenantId, 'adatum.net', {
    kind: 'federated',
    federationUrl: 'https://sts.adatum.net/adfs/ls',
  });
  assert.equal(fed.kind, 'federated');
  await assert.rejects(
    setDomainKind(s.ctx.db, tenantId, 'adatum.net', { kind: 'federated', federationUrl: 'http://plain' }),
    code('validation_failed'),
  );
  assert.equal(
    (await setDomainKind(s.ctx.db, tenantId, 'adatum.net', { kind: 'managed' })).federationUrl,
    null,
  );
});

test('pass-through authentication cannot be turned on without an active agent', async () => {
  const { tenantId } = await newTenant('litware.com');
  await assert.rejects(
    updateSettings(s.ctx.db, tenantId, { ptaEnabled: true }, { activeAgents: 0 }),
    code('no_active_agent'),
  );
  assert.equal((await getTenant(s.ctx.db, tenantId)).ptaEnabled, false);
  const t = await updateSettings(
    s.ctx.db,
    tenantId,
    { ptaEnabled: true, legacyAuth: true, jitUsers: true, loginAttribute: 'mail' },
    { activeAgents: 1 },
  );
  assert.deepEqual([t.ptaEnabled, t.legacyAuth, t.jitUsers, t.loginAttribute], [true, true, true, 'mail']);
  // Turning it off never needs an agent.
  assert.equal(
    (await updateSettings(s.ctx.db, tenantId, { ptaEnabled: false }, { activeAgents: 0 })).ptaEnabled,
    false,
  );
  await assert.rejects(
    updateSettings(s.ctx.db, tenantId, { bogus: 1 } as never, { activeAgents: 1 }),
    code('validation_failed'),
  );
  await assert.rejects(getTenant(s.ctx.db, 'no-such-tenant'), code('not_found'));
});
