/**
 * Upgrading from the first release: a database made with 0.1.0's schema (its migration list,
 * frozen in fixtures/first-release-schema.ts) and filled the way that release wrote rows (client
 * secrets in the clear in the client's metadata, no key check value, a tenant, a cloud-only
 * administrator, a synced user, a client, an agent, a registration token, sign-ins and audit rows),
 * then opened by today's cloud: every later migration runs at start and everything still works.
 * upgrade.test.ts runs it on SQLite, upgrade.int.test.ts on PostgreSQL (a service: integration).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import { Migrator } from 'kysely/migration';
import pg from 'pg';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { openState } from '../src/bootstrap.ts';
import { loadCloudConfig } from '../src/config.ts';
import { pendingMigrations } from '../src/db/migrations.ts';
import { openSqlite } from '../src/db/sqlite.ts';
import { startCloud } from '../src/server.ts';
import { listAgents } from '../src/store/agents.ts';
import { createClient } from '../src/store/clients.ts';
import { consumeRegistrationToken, createRegistrationToken } from '../src/store/registration-tokens.ts';
import { listSignIns } from '../src/store/sign-ins.ts';
import { createTenant } from '../src/store/tenants.ts';
import { firstReleaseMigrations } from './fixtures/first-release-schema.ts';

const PASSWORD = 'Upgrade-admin-pw-1';
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const quiet = { env: {}, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) };
type Any = Kysely<Record<string, Record<string, unknown>>>;

/** Rows the way 0.1.0 wrote them: made with today's writers (same key, same formats for these
 * columns), projected onto the first release's columns, client secrets back in the clear. */
const fillLikeFirstRelease = async (old: Any, now: number) => {
  const scratchDir = mkdtempSync(join(tmpdir(), 'gh-upgrade-src-'));
  dirs.push(scratchDir);
  const scratch = await openState(loadCloudConfig({}, { dataDir: scratchDir }));
  const ctx = { db: scratch.db, secrets: scratch.secrets, now: () => now };
  const { tenantId, adminUserId } = await createTenant(ctx, {
    name: 'Northwind',
    domain: 'northwind.example',
    admin: { upn: 'admin@northwind.example', password: PASSWORD },
  });
  await scratch.db.updateTable('tenants').set({ legacy_auth: 1 }).where('id', '=', tenantId).execute();
  const client = (await createClient(
    scratch.db,
    tenantId,
    { name: 'Mail', grantTypes: ['password'] },
    now,
  )) as {
    clientId: string;
    clientSecret: string;
  };
  const token = await createRegistrationToken(scratch.db, tenantId, 'operator', 3600, now);
  const tables = ['tenants', 'domains', 'users', 'clients', 'registration_tokens'];
  const src = scratch.db as unknown as Any;
  for (const table of tables) {
    const columns = (await old.introspection.getTables())
      .find((t) => t.name === table)!
      .columns.map((c) => c.name);
    for (const row of await src.selectFrom(table).select(columns).execute()) {
      if (table === 'clients') {
        const { client_secret_hash: _, ...meta } = JSON.parse(String(row.metadata));
        row.metadata = JSON.stringify({ ...meta, client_secret: client.clientSecret });
      }
      await old.insertInto(table).values(row).execute();
    }
  }
  await scratch.db.destroy();

  const agentId = '7d0c6d1e-4a7e-4c1e-9a77-2f1f0f0a0b01';
  await old
    .insertInto('agents')
    .values({
      id: agentId,
      tenant_id: tenantId,
      hostname: 'dc-agent-01',
      version: '0.1.0',
      cert_serial: '01ab',
      cert_not_after: now + 180 * 86_400_000,
      hpke_public_key: Buffer.alloc(32, 7).toString('base64url'),
      external_ip: '192.0.2.10',
      last_seen_at: now - 60_000,
      created_at: now - 86_400_000,
      deleted_at: null,
    })
    .execute();
  await old
    .insertInto('users')
    .values({
      id: '5b0e1d62-2d53-4b53-8c0c-1a1a1a1a1a1a',
      tenant_id: tenantId,
      upn: 'ann@northwind.example',
      source: 'synced',
      password_hash: null,
      display_name: 'Ann',
      mail: 'ann@northwind.example',
      enabled: 1,
      roles: '[]',
      source_anchor: 'entryUUID-ann',
      on_prem_name: null,
      on_prem_dn: 'uid=ann,ou=people,dc=northwind,dc=example',
      synced_at: now - 3_600_000,
      created_at: now - 3_600_000,
      updated_at: now - 3_600_000,
    })
    .execute();
  for (const [i, outcome] of ['success', 'invalid_credentials', 'no_agent'].entries())
    await old
      .insertInto('signins')
      .values({
        tenant_id: tenantId,
        at: now - 1000 * (10 - i),
        request_id: `old-${i}`,
        upn: 'ann@northwind.example',
        user_id: null,
        method: 'browser',
        outcome,
        client_id: client.clientId,
        client_ip: '198.51.100.7',
        agent_id: outcome === 'no_agent' ? null : agentId,
        server: null,
        directory_code: null,
        agent_ms: 4.5,
        directory_ms: 2.25,
        total_ms: 12.5,
      })
      .execute();
  await old
    .insertInto('audit')
    .values({
      tenant_id: tenantId,
      at: now,
      actor: 'operator',
      action: 'tenant.create',
      target: tenantId,
      detail: null,
    })
    .execute();
  return {
    tenantId,
    adminUserId,
    client,
    token: token.token,
    agentId,
    secretKey: join(scratchDir, 'secret.key'),
  };
};

export const upgrade = async (name: string, pgUrl?: string) => {
  const dataDir = join(mkdtempSync(join(tmpdir(), `gh-upgrade-${name}-`)), 'data');
  dirs.push(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // SQLite: the cloud's own data directory file, where the first release left it.
  const old = {
    database: pgUrl,
    db: new Kysely<Record<string, Record<string, unknown>>>({
      dialect: pgUrl
        ? new PostgresDialect({ pool: new pg.Pool({ connectionString: pgUrl }) })
        : openSqlite(join(dataDir, 'gatehouse.db')).dialect,
    }),
  };
  const now = Date.now();
  const { error } = await new Migrator({
    db: old.db,
    provider: firstReleaseMigrations(old.database ? 'postgres' : 'sqlite'),
  }).migrateToLatest();
  assert.ifError(error);
  const seeded = await fillLikeFirstRelease(old.db, now);
  const before = (await old.db.selectFrom('clients').select('metadata').executeTakeFirstOrThrow()).metadata;
  assert.match(
    String(before),
    new RegExp(seeded.client.clientSecret),
    'the first release kept the secret in the clear',
  );
  await old.db.destroy();
  copyFileSync(seeded.secretKey, join(dataDir, 'secret.key'));

  // Today's cloud on that database: it runs every later migration before it serves.
  const cloud = await startCloud(
    {
      dataDir,
      port: 0,
      gatewayPort: 0,
      publicUrl: 'https://127.0.0.1:0',
      metricsPort: 'off',
      ...(old.database ? { database: old.database } : {}),
    },
    quiet,
  );
  try {
    assert.deepEqual(await pendingMigrations(cloud.ctx.db as unknown as Kysely<unknown>), []);
    const f = pinnedFetch(cloud.caCert);
    const grant = (secret: string, password = PASSWORD) =>
      f(`${cloud.url}/${seeded.tenantId}/v2.0/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${seeded.client.clientId}:${secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({
          grant_type: 'password',
          username: 'admin@northwind.example',
          password,
          scope: 'openid',
        }),
      });
    // The client authenticates with the secret it always had; the administrator with the password.
    const ok = await grant(seeded.client.clientSecret);
    assert.equal(ok.status, 200, await ok.clone().text());
    const tokens = (await ok.json()) as { id_token: string; access_token: string };
    assert.ok(tokens.id_token && tokens.access_token);
    assert.equal((await grant(`${seeded.client.clientSecret}x`)).status, 401);
    assert.equal((await grant(seeded.client.clientSecret, 'wrong-pw')).status, 400);
    // The secret is no longer stored in the clear (migration 0005).
    const after = await cloud.ctx.db.selectFrom('clients').select('metadata').executeTakeFirstOrThrow();
    assert.ok(!after.metadata.includes(seeded.client.clientSecret));

    const agents = await listAgents(cloud.ctx.db, seeded.tenantId, {
      now: Date.now(),
      inactiveAfterMs: 30_000,
    });
    assert.deepEqual(
      agents.map((a) => [a.id, a.hostname, a.version]),
      [[seeded.agentId, 'dc-agent-01', '0.1.0']],
    );
    await cloud.authenticator.flush();
    const signins = await listSignIns(cloud.ctx.db, seeded.tenantId, { limit: 50 });
    const ids = signins.map((s) => s.requestId);
    for (const id of ['old-0', 'old-1', 'old-2']) assert.ok(ids.includes(id), `old sign-in ${id} listed`);
    assert.equal(signins.length, 5, 'three old rows and the two new password-grant sign-ins');
    assert.equal(await consumeRegistrationToken(cloud.ctx.db, seeded.token, Date.now()), seeded.tenantId);
    const check = await cloud.ctx.db.selectFrom('key_check').select('id').execute();
    assert.equal(check.length, 1, 'the start wrote the key check value with the key it had');
  } finally {
    await cloud.stop();
  }
};
