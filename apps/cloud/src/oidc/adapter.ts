/**
 * oidc-provider storage over the `oidc_payloads` table, one adapter class per tenant. Every query
 * carries the tenant id, so a token or session minted by one tenant's provider is never found by
 * another's. Rows are stored under a keyed hash of their id with the payload sealed, so the table
 * holds no token, code or session cookie a reader could present. Clients are not stored here: they
 * come from the tenant's `clients` rows.
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { oidcKeys, openOidcPayload, sealOidcPayload } from '../db/at-rest.ts';
import type { Db } from '../db/index.ts';
import type { SecretBox } from '../secrets.ts';

/** Reads a registered client: its tenant and its oidc-provider metadata. */
export type ClientLookup = (
  db: Db,
  clientId: string,
) => Promise<{ tenantId: string; metadata: object | string } | null | undefined>;

export interface AdapterDeps {
  db: Db;
  /** Keys the row ids and seals the payloads (see db/at-rest.ts). */
  secrets: SecretBox;
  tenantId: string;
  now: () => number;
  getClient: ClientLookup;
}

/** How long a client's row is reused: the token endpoint looks it up on every request. */
const CLIENT_CACHE_MS = 1000;
const CLIENT_CACHE_MAX = 1000;
type ClientCache = Map<string, { at: number; row: ReturnType<ClientLookup> }>;

class ClientAdapter implements Adapter {
  readonly #deps: AdapterDeps;
  // Like tenant settings in the authenticator: a change or deletion is seen within a second.
  readonly #cache: ClientCache;
  constructor(deps: AdapterDeps, cache: ClientCache) {
    this.#deps = deps;
    this.#cache = cache;
  }
  #lookup(id: string): ReturnType<ClientLookup> {
    const now = performance.now();
    const hit = this.#cache.get(id);
    if (hit && now - hit.at < CLIENT_CACHE_MS) return hit.row;
    const row = this.#deps.getClient(this.#deps.db, id);
    // A failed lookup is not remembered.
    row.catch(() => this.#cache.delete(id));
    if (this.#cache.size >= CLIENT_CACHE_MAX) this.#cache.clear();
    this.#cache.set(id, { at: now, row });
    return row;
  }
  async find(id: string): Promise<AdapterPayload | undefined> {
    const found = await this.#lookup(id);
    // A client of another tenant is unknown here, exactly like a client that does not exist.
    if (!found || found.tenantId !== this.#deps.tenantId) return undefined;
    const metadata = typeof found.metadata === 'string' ? JSON.parse(found.metadata) : found.metadata;
    return { ...metadata, client_id: id } as AdapterPayload;
  }
  async upsert(): Promise<void> {
    throw new Error('clients are managed through the directory, not the OIDC provider');
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
}

class PayloadAdapter implements Adapter {
  readonly #model: string;
  readonly #deps: AdapterDeps;
  readonly #keys: ReturnType<typeof oidcKeys>;
  constructor(model: string, deps: AdapterDeps) {
    this.#model = model;
    this.#deps = deps;
    this.#keys = oidcKeys(deps.secrets);
  }

  #select() {
    const { db, tenantId, now } = this.#deps;
    return db
      .selectFrom('oidc_payloads')
      .select(['id', 'payload', 'consumed_at'])
      .where('model', '=', this.#model)
      .where('tenant_id', '=', tenantId)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now())]));
  }

  #parse(row: { id: string; payload: string; consumed_at: number | null } | undefined) {
    if (!row) return undefined;
    const { secrets, tenantId } = this.#deps;
    const where = { tenantId, model: this.#model, hashedId: row.id };
    const payload = openOidcPayload(secrets, where, row.payload);
    // oidc-provider reads `consumed` (epoch seconds) to detect reuse of codes and refresh tokens.
    if (row.consumed_at !== null) payload.consumed = Math.floor(row.consumed_at / 1000);
    return payload as AdapterPayload;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    const { db, secrets, tenantId, now } = this.#deps;
    const hashedId = this.#keys.id(id);
    const str = (v: unknown, key: (s: string) => string) => (typeof v === 'string' ? key(v) : null);
    const row = {
      payload: sealOidcPayload(secrets, { tenantId, model: this.#model, hashedId }, payload),
      grant_id: str(payload.grantId, this.#keys.grantId),
      user_code: str(payload.userCode, this.#keys.userCode),
      uid: str(payload.uid, this.#keys.uid),
      expires_at: expiresIn ? now() + expiresIn * 1000 : null,
    };
    await db
      .insertInto('oidc_payloads')
      .values({ model: this.#model, id: hashedId, tenant_id: tenantId, consumed_at: null, ...row })
      .onConflict((oc) => oc.columns(['model', 'id']).doUpdateSet(row))
      .execute();
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#parse(await this.#select().where('id', '=', this.#keys.id(id)).executeTakeFirst());
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const key = this.#keys.userCode(userCode);
    return this.#parse(await this.#select().where('user_code', '=', key).executeTakeFirst());
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#parse(await this.#select().where('uid', '=', this.#keys.uid(uid)).executeTakeFirst());
  }

  async consume(id: string): Promise<void> {
    await this.#deps.db
      .updateTable('oidc_payloads')
      .set({ consumed_at: this.#deps.now() })
      .where('model', '=', this.#model)
      .where('id', '=', this.#keys.id(id))
      .where('tenant_id', '=', this.#deps.tenantId)
      .execute();
  }

  async destroy(id: string): Promise<void> {
    await this.#deps.db
      .deleteFrom('oidc_payloads')
      .where('model', '=', this.#model)
      .where('id', '=', this.#keys.id(id))
      .where('tenant_id', '=', this.#deps.tenantId)
      .execute();
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    // Every model bound to the grant goes (access and refresh tokens, codes), not only this one.
    await this.#deps.db
      .deleteFrom('oidc_payloads')
      .where('grant_id', '=', this.#keys.grantId(grantId))
      .where('tenant_id', '=', this.#deps.tenantId)
      .execute();
  }
}

/** The `adapter` option of one tenant's Provider: a factory called once per model name. */
export const createAdapterFactory = (deps: AdapterDeps) => {
  const clients: ClientCache = new Map();
  return (model: string): Adapter =>
    model === 'Client' ? new ClientAdapter(deps, clients) : new PayloadAdapter(model, deps);
};

/** Deletes expired rows of every tenant; finds already ignore them, this only reclaims space. */
export const sweepExpired = async (db: Db, now: number): Promise<number> => {
  const r = await db.deleteFrom('oidc_payloads').where('expires_at', '<', now).executeTakeFirst();
  return Number(r.numDeletedRows);
};

/** The tenant whose provider issued a live access token, or undefined (any tenant, unlike find). */
export const accessTokenTenant = async (
  db: Db,
  secrets: SecretBox,
  token: string,
  now: number,
): Promise<string | undefined> => {
  const row = await db
    .selectFrom('oidc_payloads')
    .select('tenant_id')
    // A user's access token, or a service principal's (client_credentials).
    .where('model', 'in', ['AccessToken', 'ClientCredentials'])
    .where('id', '=', oidcKeys(secrets).id(token))
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return row?.tenant_id;
};
