/**
 * Each tenant's token signing keys, one row per key (private JWK sealed with the secret key).
 * A key is published in the JWKS from the moment it is written, signs from `signs_from` (until a
 * newer key of its algorithm does), and is removed at `retires_at`, once the last token it signed
 * has expired. Times decide everything, so every cloud node agrees without talking to the others.
 *
 * A tenant made before this table existed has its first ES256 key in `tenants.jwks_sealed`; it is
 * copied here with an RS256 key on first use (seed below), under ids every node derives alike.
 */
import { generateKeyPair as generateKeyPairCb, type JsonWebKey, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { GatehouseError, TenantId } from '@gatehouse/protocol';
import type { JWK } from 'jose';
import type { CloudContext } from '../context.ts';
import { getTenantSecrets } from './tenants.ts';
import { parse } from './util.ts';

export const SIGNING_ALGS = ['ES256', 'RS256'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

export type KeyState = 'next' | 'signing' | 'retiring';

export interface SigningKeyInfo {
  kid: string;
  alg: SigningAlg;
  state: KeyState;
  createdAt: number;
  signsFrom: number;
  retiresAt: number | null;
}

type Ctx = Pick<CloudContext, 'db' | 'secrets' | 'now'>;

const generateKeyPair = promisify(generateKeyPairCb);
const sealContext = (tenantId: string, kid: string) => `signing-key:${tenantId}:${kid}`;

const newKey = async (alg: SigningAlg): Promise<JWK> => {
  const { privateKey } =
    alg === 'RS256'
      ? await generateKeyPair('rsa', { modulusLength: 2048 })
      : await generateKeyPair('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as JsonWebKey as JWK;
  return { ...jwk, kid: randomBytes(12).toString('base64url'), alg, use: 'sig' };
};

interface Row {
  kid: string;
  alg: string;
  jwk_sealed: string;
  created_at: number;
  signs_from: number;
  retires_at: number | null;
}

const rowsOf = (ctx: Ctx, tenantId: string): Promise<Row[]> =>
  ctx.db
    .selectFrom('signing_keys')
    .select(['kid', 'alg', 'jwk_sealed', 'created_at', 'signs_from', 'retires_at'])
    .where('tenant_id', '=', tenantId)
    .execute();

/** Per algorithm: the key that signs now is the newest whose time has come (ties: lowest kid). */
const stateOf = (rows: readonly Row[], now: number): Map<string, KeyState> => {
  const states = new Map<string, KeyState>();
  for (const alg of SIGNING_ALGS) {
    const own = rows
      .filter((r) => r.alg === alg && (r.retires_at === null || r.retires_at > now))
      .sort((a, b) => b.signs_from - a.signs_from || (a.kid < b.kid ? -1 : 1));
    let signer: string | undefined;
    for (const r of own) {
      if (r.signs_from > now) states.set(r.kid, 'next');
      else if (!signer) {
        signer = r.kid;
        states.set(r.kid, 'signing');
      } else states.set(r.kid, 'retiring');
    }
  }
  return states;
};

/** Copies the tenant's original key here and adds an RS256 one; a no-op once either is there. */
const seed = async (ctx: Ctx, tenantId: string): Promise<void> => {
  const legacy = (await getTenantSecrets(ctx, tenantId)).jwks.keys;
  const first = legacy[0]?.kid ?? tenantId;
  // The RS256 key's id is derived, so two nodes seeding at once insert the same row once.
  const rsa = { ...(await newKey('RS256')), kid: `${first}-rs256` };
  const now = ctx.now();
  const values = [...legacy, rsa].map((k) => ({
    tenant_id: tenantId,
    kid: String(k.kid),
    alg: String(k.alg ?? 'ES256'),
    jwk_sealed: ctx.secrets.seal(JSON.stringify(k), sealContext(tenantId, String(k.kid))),
    created_at: now,
    signs_from: 0,
    retires_at: null,
  }));
  await ctx.db
    .insertInto('signing_keys')
    .values(values)
    .onConflict((oc) => oc.columns(['tenant_id', 'kid']).doNothing())
    .execute();
};

export interface TenantJwks {
  /** Private JWKS for oidc-provider: per algorithm the signing key first (it signs with the first
   * key of an algorithm), then the keys only published (next and retiring). */
  jwks: { keys: JWK[] };
  /** When the set changes next (a key starts signing or retires), or null. */
  nextChangeAt: number | null;
}

export const loadSigningKeys = async (ctx: Ctx, tenantId: string): Promise<TenantJwks> => {
  let rows = await rowsOf(ctx, tenantId);
  if (!SIGNING_ALGS.every((alg) => rows.some((r) => r.alg === alg))) {
    await seed(ctx, tenantId);
    rows = await rowsOf(ctx, tenantId);
  }
  const now = ctx.now();
  const states = stateOf(rows, now);
  const rank = (r: Row) => (states.get(r.kid) === 'signing' ? 0 : 1);
  const live = rows.filter((r) => states.has(r.kid)).sort((a, b) => rank(a) - rank(b));
  const changes = rows
    .flatMap((r) => [r.signs_from, r.retires_at ?? 0])
    .filter((t) => t > now)
    .sort((a, b) => a - b);
  return {
    jwks: {
      keys: live.map((r) => JSON.parse(ctx.secrets.open(r.jwk_sealed, sealContext(tenantId, r.kid))) as JWK),
    },
    nextChangeAt: changes[0] ?? null,
  };
};

export const listSigningKeys = async (ctx: Ctx, tenantId: string): Promise<SigningKeyInfo[]> => {
  const tid = parse(TenantId, tenantId);
  await loadSigningKeys(ctx, tid);
  const rows = await rowsOf(ctx, tid);
  const states = stateOf(rows, ctx.now());
  return rows
    .filter((r) => states.has(r.kid))
    .sort((a, b) => a.alg.localeCompare(b.alg) || a.signs_from - b.signs_from)
    .map((r) => ({
      kid: r.kid,
      alg: r.alg as SigningAlg,
      state: states.get(r.kid)!,
      createdAt: r.created_at,
      signsFrom: r.signs_from,
      retiresAt: r.retires_at,
    }));
};

/**
 * Starts a rotation: one new key per algorithm, published now and signing after `publishDelayS`
 * (longer than relying parties cache the JWKS, so none meets a token whose key it has not
 * fetched); the keys they replace stay published until `maxTokenTtlS` after that, when the last
 * token they signed has expired. A second rotation before the first has taken effect is a conflict.
 */
export const rotateSigningKeys = async (
  ctx: Ctx,
  tenantId: string,
  opts: { publishDelayS: number; maxTokenTtlS: number },
): Promise<SigningKeyInfo[]> => {
  const tid = parse(TenantId, tenantId);
  await loadSigningKeys(ctx, tid);
  const fresh = await Promise.all(SIGNING_ALGS.map((alg) => newKey(alg)));
  const now = ctx.now();
  const signsFrom = now + opts.publishDelayS * 1000;
  const retiresAt = signsFrom + opts.maxTokenTtlS * 1000;
  await ctx.db.transaction().execute(async (trx) => {
    // The write first: on SQLite it takes the write lock before the read below.
    await trx
      .deleteFrom('signing_keys')
      .where('tenant_id', '=', tid)
      .where('retires_at', '<=', now)
      .execute();
    const rows = await trx
      .selectFrom('signing_keys')
      .select(['kid', 'alg', 'jwk_sealed', 'created_at', 'signs_from', 'retires_at'])
      .where('tenant_id', '=', tid)
      .execute();
    const states = stateOf(rows, now);
    if ([...states.values()].includes('next'))
      throw new GatehouseError('conflict', {
        reason: 'a key rotation is in progress: its keys sign from the time given',
        signsFrom: Math.max(...rows.map((r) => r.signs_from)),
      });
    const signers = rows.filter((r) => states.get(r.kid) === 'signing').map((r) => r.kid);
    if (signers.length > 0)
      await trx
        .updateTable('signing_keys')
        .set({ retires_at: retiresAt })
        .where('tenant_id', '=', tid)
        .where('kid', 'in', signers)
        .execute();
    await trx
      .insertInto('signing_keys')
      .values(
        fresh.map((k) => ({
          tenant_id: tid,
          kid: String(k.kid),
          alg: String(k.alg),
          jwk_sealed: ctx.secrets.seal(JSON.stringify(k), sealContext(tid, String(k.kid))),
          created_at: now,
          signs_from: signsFrom,
          retires_at: null,
        })),
      )
      .execute();
  });
  return listSigningKeys(ctx, tid);
};
