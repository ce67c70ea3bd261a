/** One set of migrations for SQLite and PostgreSQL (Kysely's schema builder speaks both). */
import { type ColumnDefinitionBuilder, type Kysely, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import type { SecretBox } from '../secrets.ts';
import { hashClientSecret, oidcKeys, sealOidcPayload } from './at-rest.ts';
import type { Database } from './schema.ts';

export type Engine = 'sqlite' | 'postgres';

const initial = (engine: Engine): Migration => ({
  async up(db: Kysely<unknown>) {
    const serial = (c: ColumnDefinitionBuilder) =>
      engine === 'postgres' ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement();
    await db.schema
      .createTable('tenants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('pta_enabled', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('legacy_auth', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('login_attribute', 'text', (c) => c.notNull().defaultTo('upn'))
      .addColumn('lockout_threshold', 'integer', (c) => c.notNull().defaultTo(10))
      .addColumn('lockout_duration_s', 'integer', (c) => c.notNull().defaultTo(60))
      .addColumn('ca_cert', 'text', (c) => c.notNull())
      .addColumn('ca_key_sealed', 'text', (c) => c.notNull())
      .addColumn('jwks_sealed', 'text', (c) => c.notNull())
      .addColumn('cookie_keys_sealed', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('domains')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('kind', 'text', (c) => c.notNull().defaultTo('managed'))
      .addColumn('verified', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('verification_code', 'text', (c) => c.notNull())
      .addColumn('federation_url', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('users')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('upn', 'text', (c) => c.notNull())
      .addColumn('source', 'text', (c) => c.notNull())
      .addColumn('password_hash', 'text')
      .addColumn('display_name', 'text')
      .addColumn('mail', 'text')
      .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('roles', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('source_anchor', 'text')
      .addColumn('on_prem_name', 'text')
      .addColumn('on_prem_dn', 'text')
      .addColumn('synced_at', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addUniqueConstraint('users_tenant_upn', ['tenant_id', 'upn'])
      .addUniqueConstraint('users_tenant_anchor', ['tenant_id', 'source_anchor'])
      .execute();
    await db.schema.createIndex('users_tenant_mail').on('users').columns(['tenant_id', 'mail']).execute();
    await db.schema
      .createTable('clients')
      .addColumn('client_id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('metadata', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('agents')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('hostname', 'text', (c) => c.notNull())
      .addColumn('version', 'text', (c) => c.notNull())
      .addColumn('cert_serial', 'text', (c) => c.notNull())
      .addColumn('cert_not_after', 'bigint', (c) => c.notNull())
      .addColumn('hpke_public_key', 'text', (c) => c.notNull())
      .addColumn('external_ip', 'text')
      .addColumn('last_seen_at', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('deleted_at', 'bigint')
      .execute();
    await db.schema.createIndex('agents_tenant').on('agents').column('tenant_id').execute();
    await db.schema
      .createTable('registration_tokens')
      .addColumn('token_hash', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('used_at', 'bigint')
      .execute();
    await db.schema
      .createTable('device_codes')
      .addColumn('device_code_hash', 'text', (c) => c.primaryKey())
      .addColumn('user_code', 'text', (c) => c.notNull().unique())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('hostname', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('approved_by', 'text')
      .addColumn('last_poll_at', 'bigint')
      .execute();
    await db.schema
      .createTable('signins')
      .addColumn('id', 'integer', serial)
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('request_id', 'text', (c) => c.notNull())
      .addColumn('upn', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text')
      .addColumn('method', 'text', (c) => c.notNull())
      .addColumn('outcome', 'text', (c) => c.notNull())
      .addColumn('client_id', 'text')
      .addColumn('client_ip', 'text')
      .addColumn('agent_id', 'text')
      .addColumn('server', 'text')
      .addColumn('directory_code', 'text')
      .addColumn('agent_ms', 'double precision')
      .addColumn('directory_ms', 'double precision')
      .addColumn('total_ms', 'double precision', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('signins_tenant_at').on('signins').columns(['tenant_id', 'at']).execute();
    await db.schema
      .createTable('audit')
      .addColumn('id', 'integer', serial)
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('actor', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('target', 'text')
      .addColumn('detail', 'text')
      .execute();
    await db.schema.createIndex('audit_tenant_at').on('audit').columns(['tenant_id', 'at']).execute();
    await db.schema
      .createTable('oidc_payloads')
      .addColumn('model', 'text', (c) => c.notNull())
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('grant_id', 'text')
      .addColumn('user_code', 'text')
      .addColumn('uid', 'text')
      .addColumn('expires_at', 'bigint')
      .addColumn('consumed_at', 'bigint')
      .addPrimaryKeyConstraint('oidc_payloads_pk', ['model', 'id'])
      .execute();
    await db.schema.createIndex('oidc_grant').on('oidc_payloads').column('grant_id').execute();
    await db.schema.createIndex('oidc_uid').on('oidc_payloads').column('uid').execute();
  },
});

/** Smart lockout: counters per user and location (with the attempts in flight), recent
 * wrong-password keyed hashes, and the locations where each user has signed in before. */
const lockout: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('lockout_counters')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('location', 'text', (c) => c.notNull())
      .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('lock_count', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('locked_until', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('in_flight', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('in_flight_until', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('lockout_counters_pk', ['tenant_id', 'user_id', 'location'])
      .execute();
    await db.schema
      .createTable('lockout_bad_passwords')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('lockout_bad_passwords_pk', ['tenant_id', 'user_id', 'hash'])
      .execute();
    await db.schema
      .createTable('familiar_locations')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('key_hash', 'text', (c) => c.notNull())
      .addColumn('last_success_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('familiar_locations_pk', ['tenant_id', 'user_id', 'key_hash'])
      .execute();
    await db.schema.alterTable('tenants').addColumn('directory_lockout_threshold', 'integer').execute();
    await db.schema.alterTable('tenants').addColumn('directory_lockout_duration_s', 'integer').execute();
  },
};

/** Sign-in by the on-premises DOMAIN\\name form looks users up by it, case-insensitively. */
const onPremNameIndex: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createIndex('users_tenant_on_prem_name')
      .on('users')
      .columns(['tenant_id'])
      .expression(sql`lower(on_prem_name)`)
      .execute();
  },
};

/** The secret key's check value, so a process with another key is refused before it writes. */
const keyCheck: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('key_check')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('sealed', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/**
 * Rows written before secrets were kept as hashes (db/at-rest.ts): client secrets become their
 * hash, OIDC rows move under the keyed hash of their id with the payload sealed. Nothing is lost,
 * so clients keep their secrets and users their sessions and refresh tokens across the upgrade.
 * The OIDC rows need the secret key; the entry points check it before migrating.
 */
const secretsAtRest = (secrets: SecretBox | undefined): Migration => ({
  async up(raw: Kysely<unknown>) {
    const db = raw as unknown as Kysely<Database>;
    // SQLite's migrations run outside a transaction; PostgreSQL's inside one already.
    if (db.isTransaction) await convertSecrets(db, secrets);
    else await db.transaction().execute((trx) => convertSecrets(trx, secrets));
  },
});

/** Exported for the upgrade test, which plants rows in the older format. */
export const convertSecrets = async (db: Kysely<Database>, secrets: SecretBox | undefined) => {
  // A write first: on SQLite it takes the write lock at once (waiting out busy_timeout), where a
  // read that later turns into a write fails at once if another connection wrote in between.
  await db.deleteFrom('oidc_payloads').where('expires_at', '<', Date.now()).execute();
  for (const r of await db.selectFrom('clients').select(['client_id', 'metadata']).execute()) {
    const { client_secret, ...rest } = JSON.parse(r.metadata) as { client_secret?: unknown };
    if (typeof client_secret !== 'string') continue;
    const metadata = JSON.stringify({ ...rest, client_secret_hash: hashClientSecret(client_secret) });
    await db.updateTable('clients').set({ metadata }).where('client_id', '=', r.client_id).execute();
  }
  // A sealed payload was written by this version already: converting it twice would lose it.
  const all = await db.selectFrom('oidc_payloads').selectAll().execute();
  const rows = all.filter((r) => r.payload.startsWith('{'));
  if (rows.length === 0) return;
  if (!secrets) throw new Error('converting the stored OIDC rows needs the secret key');
  const keys = oidcKeys(secrets);
  const key = (v: string | null, f: (s: string) => string) => (v === null ? null : f(v));
  for (const r of rows) {
    const hashedId = keys.id(r.id);
    const where = { tenantId: r.tenant_id, model: r.model, hashedId };
    await db.deleteFrom('oidc_payloads').where('model', '=', r.model).where('id', '=', r.id).execute();
    await db
      .insertInto('oidc_payloads')
      .values({
        ...r,
        id: hashedId,
        payload: sealOidcPayload(secrets, where, JSON.parse(r.payload)),
        grant_id: key(r.grant_id, keys.grantId),
        user_code: key(r.user_code, keys.userCode),
        uid: key(r.uid, keys.uid),
      })
      .execute();
  }
};

/** Who asked for a device code, shown to the approver: the address is the one fact not self-declared. */
const deviceRequester: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('device_codes').addColumn('requester_ip', 'text').execute();
    await db.schema.alterTable('device_codes').addColumn('requested_at', 'bigint').execute();
  },
};

/**
 * Directory groups and each synced user's transitive memberships (resolved on premises), and one
 * record per sync run. Memberships go with their user or group (cascade), so a deleted user or
 * group leaves none behind.
 */
const groupsAndSyncRuns: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('groups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('source_anchor', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('on_prem_name', 'text')
      .addColumn('on_prem_sid', 'text')
      .addColumn('dn', 'text', (c) => c.notNull())
      .addColumn('security', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('description', 'text')
      .addColumn('synced_at', 'bigint', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addUniqueConstraint('groups_tenant_anchor', ['tenant_id', 'source_anchor'])
      .execute();
    await db.schema.createIndex('groups_tenant_name').on('groups').columns(['tenant_id', 'name']).execute();
    await db.schema
      .createTable('group_members')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('group_id', 'text', (c) => c.notNull().references('groups.id').onDelete('cascade'))
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addPrimaryKeyConstraint('group_members_pk', ['group_id', 'user_id'])
      .execute();
    await db.schema
      .createIndex('group_members_user')
      .on('group_members')
      .columns(['tenant_id', 'user_id'])
      .execute();
    await db.schema
      .createTable('sync_runs')
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('server', 'text')
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('started_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('finished_at', 'bigint')
      .addColumn('pages', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('total_pages', 'integer')
      .addColumn('counts', 'text', (c) => c.notNull())
      .addColumn('error', 'text')
      .addPrimaryKeyConstraint('sync_runs_pk', ['tenant_id', 'id'])
      .execute();
    await db.schema
      .createIndex('sync_runs_tenant_started')
      .on('sync_runs')
      .columns(['tenant_id', 'started_at'])
      .execute();
  },
};

/** Settings of the running service by name: the URLs it last started with (store/service-urls.ts). */
const serviceSettings: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('service_settings')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/**
 * APIs (resource servers) with their scopes, the scopes an administrator granted each client on
 * each (store/apis.ts), and each tenant's signing keys with their publish and retire times
 * (store/signing-keys.ts). A grant goes with its API or client (cascade).
 */
const apisAndSigningKeys: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('apis')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('identifier', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('scopes', 'text', (c) => c.notNull())
      .addColumn('token_format', 'text', (c) => c.notNull())
      .addColumn('signing_alg', 'text', (c) => c.notNull())
      .addColumn('access_token_ttl_s', 'integer', (c) => c.notNull())
      .addColumn('introspection_client_id', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addUniqueConstraint('apis_tenant_identifier', ['tenant_id', 'identifier'])
      .execute();
    await db.schema
      .createTable('api_grants')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('api_id', 'text', (c) => c.notNull().references('apis.id').onDelete('cascade'))
      .addColumn('client_id', 'text', (c) => c.notNull().references('clients.client_id').onDelete('cascade'))
      .addColumn('scopes', 'text', (c) => c.notNull())
      .addColumn('granted_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('api_grants_pk', ['api_id', 'client_id'])
      .execute();
    await db.schema.createIndex('api_grants_client').on('api_grants').columns(['client_id']).execute();
    await db.schema
      .createTable('signing_keys')
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('kid', 'text', (c) => c.notNull())
      .addColumn('alg', 'text', (c) => c.notNull())
      .addColumn('jwk_sealed', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('signs_from', 'bigint', (c) => c.notNull())
      .addColumn('retires_at', 'bigint')
      .addPrimaryKeyConstraint('signing_keys_pk', ['tenant_id', 'kid'])
      .execute();
  },
};

/** Which user an OIDC row belongs to: sync revokes a disabled or deleted user's grants (store/oidc-payloads.ts). */
const payloadAccount: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('oidc_payloads').addColumn('account_id', 'text').execute();
    await db.schema
      .createIndex('oidc_account')
      .on('oidc_payloads')
      .columns(['tenant_id', 'account_id'])
      .execute();
  },
};

/** The tenant's just-in-time users switch (off by default: signin/jit.ts). */
const jitUsers: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .alterTable('tenants')
      .addColumn('jit_users', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};

/** The agent's full-sync interval on each run record, so the cloud can tell an overdue sync. */
const syncInterval: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('sync_runs').addColumn('interval_minutes', 'double precision').execute();
  },
};

const lockoutInFlightBy: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .alterTable('lockout_counters')
      .addColumn('in_flight_by', 'text', (c) => c.notNull().defaultTo(''))
      .execute();
  },
};

const provider = (engine: Engine, opts: MigrateOptions): MigrationProvider => ({
  getMigrations: async () => ({
    '0001_initial': initial(engine),
    '0002_lockout': lockout,
    '0003_on_prem_name': onPremNameIndex,
    '0004_key_check': keyCheck,
    '0005_secrets_at_rest': secretsAtRest(opts.secrets),
    '0006_device_requester': deviceRequester,
    '0007_groups_sync_runs': groupsAndSyncRuns,
    '0008_service_settings': serviceSettings,
    '0009_apis_signing_keys': apisAndSigningKeys,
    '0010_payload_account': payloadAccount,
    '0011_jit_users': jitUsers,
    '0012_sync_interval': syncInterval,
    '0013_lockout_in_flight_by': lockoutInFlightBy,
  }),
});

export interface MigrateOptions {
  /** The database's secret key: converting rows written by older versions may need it. */
  secrets?: SecretBox;
}

export const migrateToLatest = async (
  db: Kysely<unknown>,
  engine: Engine,
  opts: MigrateOptions = {},
): Promise<void> => {
  const { error, results } = await new Migrator({ db, provider: provider(engine, opts) }).migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed)
    throw new Error(`database migration failed: ${failed?.migrationName ?? ''}`, { cause: error });
};

/**
 * Migrations this version knows that the database has not run: readiness (/readyz) wants none, so
 * a node never serves from a schema it does not know. Reads Kysely's own bookkeeping table.
 */
export const pendingMigrations = async (db: Kysely<unknown>): Promise<string[]> => {
  const known = Object.keys(await provider('sqlite', {}).getMigrations());
  const rows = await (db as Kysely<{ kysely_migration: { name: string } }>)
    .selectFrom('kysely_migration')
    .select('name')
    .execute();
  const done = new Set(rows.map((r) => r.name));
  return known.filter((n) => !done.has(n));
};
