/**
 * oidc-provider storage over the `oidc_payloads` table, one adapter class per tenant. Every query
 * carries the tenant id, so a token or session minted by one tenant's provider is never found by
 * another's. Clients are not stored here: they come from the tenant's `clients` rows.
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Db } from '../db/index.ts';

/** Reads a registered client: its tenant and its oidc-provider metadata. */
export type ClientLookup = (
  db: Db,
  clientId: string,
) => Promise<{ tenantId: string; metadata: object | string } | null | undefined>;

export interface AdapterDeps {
  db: Db;
  tenantId: string;
  now: () => number;
  getClient: ClientLookup;
}

const parse = (row: { payload: string; consumed_at: number | null }): AdapterPayload => {
  const payload = JSON.parse(row.payload) as AdapterPayload;
  // oidc-provider reads `consumed` (epoch seconds) to detect reuse of codes and refresh tokens.
  return row.consumed_at === null ? payload : { ...payload, consumed: Math.floor(row.consumed_at / 1000) };
};

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
  constructor(model: string, deps: AdapterDeps) {
    this.#model = model;
    this.#deps = deps;
  }

  #select() {
    const { db, tenantId, now } = this.#deps;
    return db
      .selectFrom('oidc_payloads')
      .select(['payload', 'consumed_at'])
      .where('model', '=', this.#model)
      .where('tenant_id', '=', tenantId)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now())]));
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    const row = {
      payload: JSON.stringify(payload),
      grant_id: typeof payload.grantId === 'string' ? payload.grantId : null,
      user_code: typeof payload.userCode === 'string' ? payload.userCode : null,
      uid: typeof payload.uid === 'string' ? payload.uid : null,
      expires_at: expiresIn ? this.#deps.now() + expiresIn * 1000 : null,
    };
    await this.#deps.db
      .insertInto('oidc_payloads')
      .values({ model: this.#model, id, tenant_id: this.#deps.tenantId, consumed_at: null, ...row })
      .onConflict((oc) => oc.columns(['model', 'id']).doUpdateSet(row))
      .execute();
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const row = await this.#select().where('id', '=', id).executeTakeFirst();
    return row ? parse(row) : undefined;
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const row = await this.#select().where('user_code', '=', userCode).executeTakeFirst();
    return row ? parse(row) : undefined;
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const row = await this.#select().where('uid', '=', uid).executeTakeFirst();
    return row ? parse(row) : undefined;
  }

  async consume(id: string): Promise<void> {
    await this.#deps.db
      .updateTable('oidc_payloads')
      .set({ consumed_at: this.#deps.now() })
      .where('model', '=', this.#model)
      .where('id', '=', id)
      .where('tenant_id', '=', this.#deps.tenantId)
      .execute();
  }

  async destroy(id: string): Promise<void> {
    await this.#deps.db
      .deleteFrom('oidc_payloads')
      .where('model', '=', this.#model)
      .where('id', '=', id)
      .where('tenant_id', '=', this.#deps.tenantId)
      .execute();
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    // Every model bound to the grant goes (access and refresh tokens, codes), not only this one.
    await this.#deps.db
      .deleteFrom('oidc_payloads')
      .where('grant_id', '=', grantId)
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
