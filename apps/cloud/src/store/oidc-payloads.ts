/**
 * The oidc_payloads table: oidc-provider's tokens, codes, sessions and grants. Rows arrive already
 * keyed and sealed (oidc/adapter.ts hashes the ids and seals the payloads); every query of one
 * tenant's provider carries its tenant id.
 */
import type { Db } from '../db/index.ts';
import { prepare } from '../db/prepared.ts';

/** One model of one tenant's provider. */
export interface PayloadScope {
  tenantId: string;
  model: string;
}

export interface PayloadRow {
  id: string;
  payload: string;
  consumed_at: number | null;
}

const findBy = (column: 'id' | 'user_code' | 'uid') =>
  prepare((db: Db, p: { model: string; tenantId: string; key: string; now: number }) =>
    db
      .selectFrom('oidc_payloads')
      .select(['id', 'payload', 'consumed_at'])
      .where('model', '=', p.model)
      .where('tenant_id', '=', p.tenantId)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', p.now)]))
      .where(column, '=', p.key),
  );
// Prepared (db/prepared.ts): oidc-provider reads and writes these on every token request.
const finders = { id: findBy('id'), user_code: findBy('user_code'), uid: findBy('uid') };

/** The live (unexpired) row whose `column` equals `key`. */
export const findPayload = async (
  db: Db,
  s: PayloadScope,
  column: 'id' | 'user_code' | 'uid',
  key: string,
  now: number,
): Promise<PayloadRow | undefined> =>
  (await finders[column](db, { model: s.model, tenantId: s.tenantId, key, now })).rows[0];

export interface PayloadWrite {
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  expires_at: number | null;
  /** users.id, kept in the clear: an id, not a bearer value, and the key of revokeGrantsOfUser. */
  account_id: string | null;
}

type Upsert = PayloadScope & { id: string } & PayloadWrite;
const upsert = prepare((db: Db, p: Upsert) => {
  const row: PayloadWrite = {
    payload: p.payload,
    grant_id: p.grant_id,
    user_code: p.user_code,
    uid: p.uid,
    expires_at: p.expires_at,
    account_id: p.account_id,
  };
  return db
    .insertInto('oidc_payloads')
    .values({ model: p.model, id: p.id, tenant_id: p.tenantId, consumed_at: null, ...row })
    .onConflict((oc) => oc.columns(['model', 'id']).doUpdateSet(row));
});

export const upsertPayload = async (
  db: Db,
  s: PayloadScope,
  id: string,
  row: PayloadWrite,
): Promise<void> => {
  await upsert(db, { model: s.model, tenantId: s.tenantId, id, ...row });
};

export const consumePayload = async (db: Db, s: PayloadScope, id: string, at: number): Promise<void> => {
  await db
    .updateTable('oidc_payloads')
    .set({ consumed_at: at })
    .where('model', '=', s.model)
    .where('id', '=', id)
    .where('tenant_id', '=', s.tenantId)
    .execute();
};

export const deletePayload = async (db: Db, s: PayloadScope, id: string): Promise<void> => {
  await db
    .deleteFrom('oidc_payloads')
    .where('model', '=', s.model)
    .where('id', '=', id)
    .where('tenant_id', '=', s.tenantId)
    .execute();
};

/** Every row of the grant, whatever its model. */
export const deleteGrantPayloads = async (db: Db, tenantId: string, grantId: string): Promise<void> => {
  await db
    .deleteFrom('oidc_payloads')
    .where('grant_id', '=', grantId)
    .where('tenant_id', '=', tenantId)
    .execute();
};

/**
 * Every session, grant, code and token of one user (disabled or deleted in the directory): the
 * next refresh or session check finds nothing. Rows written before account_id existed are not
 * found here; findAccount refuses such a user anyway. Returns how many rows went.
 */
export const revokeGrantsOfUser = async (db: Db, tenantId: string, userId: string): Promise<number> => {
  const r = await db
    .deleteFrom('oidc_payloads')
    .where('tenant_id', '=', tenantId)
    .where('account_id', '=', userId)
    .executeTakeFirst();
  return Number(r.numDeletedRows);
};

/** Deletes expired rows of every tenant and returns how many went. */
export const deleteExpiredPayloads = async (db: Db, now: number): Promise<number> => {
  const r = await db.deleteFrom('oidc_payloads').where('expires_at', '<', now).executeTakeFirst();
  return Number(r.numDeletedRows);
};

/** The tenant of a live access token (a user's, or a service principal's), by its keyed id; any tenant. */
export const liveAccessTokenTenant = async (db: Db, id: string, now: number): Promise<string | undefined> => {
  const row = await db
    .selectFrom('oidc_payloads')
    .select('tenant_id')
    .where('model', 'in', ['AccessToken', 'ClientCredentials'])
    .where('id', '=', id)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return row?.tenant_id;
};
