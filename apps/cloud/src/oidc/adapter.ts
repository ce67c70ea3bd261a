/**
 * oidc-provider storage over the `oidc_payloads` table, one adapter class per tenant. Every query
 * carries the tenant id, so a token or session minted by one tenant's provider is never found by
 * another's. Rows are stored under a keyed hash of their id with the payload sealed, so the table
 * holds no token, code or session cookie a reader could present. Clients are not stored here: they
 * come from the tenant's `clients` rows.
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { oidcKeys, openOidcPayload, sealOidcPayload } from '../db/at-rest.ts';
import { directWrites, type GroupCommit } from '../db/group-commit.ts';
import type { Db } from '../db/index.ts';
import type { SecretBox } from '../secrets.ts';
import {
  consumePayload,
  deleteExpiredPayloads,
  deleteGrantPayloads,
  deletePayload,
  findPayload,
  liveAccessTokenTenant,
  type PayloadRow,
  type PayloadScope,
  upsertPayload,
} from '../store/oidc-payloads.ts';

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
  /** Where saves go: the sign-in path's group commit (a grant and its tokens share a commit with
   * the sign-in writes of the moment); each save still resolves only once committed. */
  writes?: GroupCommit;
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
  readonly #scope: PayloadScope;
  readonly #writes: GroupCommit;
  constructor(model: string, deps: AdapterDeps) {
    this.#model = model;
    this.#deps = deps;
    this.#writes = deps.writes ?? directWrites(deps.db);
    this.#keys = oidcKeys(deps.secrets);
    this.#scope = { tenantId: deps.tenantId, model };
  }

  async #find(column: 'id' | 'user_code' | 'uid', key: string) {
    return this.#parse(await findPayload(this.#deps.db, this.#scope, column, key, this.#deps.now()));
  }

  #parse(row: PayloadRow | undefined) {
    if (!row) return undefined;
    const { secrets, tenantId } = this.#deps;
    const where = { tenantId, model: this.#model, hashedId: row.id };
    const payload = openOidcPayload(secrets, where, row.payload);
    // oidc-provider reads `consumed` (epoch seconds) to detect reuse of codes and refresh tokens.
    if (row.consumed_at !== null) payload.consumed = Math.floor(row.consumed_at / 1000);
    return payload as AdapterPayload;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    const { secrets, tenantId, now } = this.#deps;
    const hashedId = this.#keys.id(id);
    const str = (v: unknown, key: (s: string) => string) => (typeof v === 'string' ? key(v) : null);
    const row = {
      payload: sealOidcPayload(secrets, { tenantId, model: this.#model, hashedId }, payload),
      grant_id: str(payload.grantId, this.#keys.grantId),
      user_code: str(payload.userCode, this.#keys.userCode),
      uid: str(payload.uid, this.#keys.uid),
      account_id: typeof payload.accountId === 'string' ? payload.accountId : null,
      expires_at: expiresIn ? now() + expiresIn * 1000 : null,
    };
    await this.#writes.run((db) => upsertPayload(db, this.#scope, hashedId, row));
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#find('id', this.#keys.id(id));
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#find('user_code', this.#keys.userCode(userCode));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#find('uid', this.#keys.uid(uid));
  }

  async consume(id: string): Promise<void> {
    return consumePayload(this.#deps.db, this.#scope, this.#keys.id(id), this.#deps.now());
  }

  async destroy(id: string): Promise<void> {
    return deletePayload(this.#deps.db, this.#scope, this.#keys.id(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    // Every model bound to the grant goes (access and refresh tokens, codes), not only this one.
    return deleteGrantPayloads(this.#deps.db, this.#deps.tenantId, this.#keys.grantId(grantId));
  }
}

/** The `adapter` option of one tenant's Provider: a factory called once per model name. */
export const createAdapterFactory = (deps: AdapterDeps) => {
  const clients: ClientCache = new Map();
  return (model: string): Adapter =>
    model === 'Client' ? new ClientAdapter(deps, clients) : new PayloadAdapter(model, deps);
};

/** Deletes expired rows of every tenant; finds already ignore them, this only reclaims space. */
export const sweepExpired = (db: Db, now: number): Promise<number> => deleteExpiredPayloads(db, now);

/** The tenant whose provider issued a live access token, or undefined (any tenant, unlike find). */
export const accessTokenTenant = async (
  db: Db,
  secrets: SecretBox,
  token: string,
  now: number,
): Promise<string | undefined> => liveAccessTokenTenant(db, oidcKeys(secrets).id(token), now);
