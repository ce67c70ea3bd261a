/**
 * The timing of signing key rotation (store/signing-keys.ts keeps the keys) and the cache
 * headers that make it safe. Three numbers, from one setting (`signingKeyPublishDelayS`, D):
 *
 * - a new key signs D after it was published;
 * - relying parties may cache the JWKS and discovery for `max-age` = min(900 s, D/4);
 * - a cloud node reloads a tenant's keys at least every min(60 s, D/4), so a rotation made by
 *   the CLI or on another node is published everywhere well before the key signs.
 *
 * So a relying party that fetched the JWKS just before a rotation has fetched it again, with the
 * new key, at least D/2 before that key's first token. The key it replaces stays published until
 * the longest token it could have signed has expired.
 */
import type Provider from 'oidc-provider';
import type { CloudConfig } from '../config.ts';
import type { Db } from '../db/index.ts';
import { listApis, MAX_API_TOKEN_TTL_S } from '../store/apis.ts';

type Middleware = Parameters<Provider['use']>[0];

/** Lifetimes of what the provider signs, and of its opaque tokens (seconds). */
export const TOKEN_TTL_S = { IdToken: 3600, AccessToken: 3600, ClientCredentials: 3600 } as const;

/** Clocks of relying parties drift; a retired key stays this much longer. */
const CLOCK_SKEW_S = 300;

export const keyTimings = (config: Pick<CloudConfig, 'signingKeyPublishDelayS'>) => {
  const delay = config.signingKeyPublishDelayS;
  return {
    publishDelayS: delay,
    jwksMaxAgeS: Math.max(1, Math.min(900, Math.floor(delay / 4))),
    reloadMs: Math.max(1, Math.min(60, Math.floor(delay / 4))) * 1000,
  };
};

/** How long a replaced key must stay published: the longest token it may have signed, and skew. */
export const maxSignedTokenTtlS = async (db: Db, tenantId: string): Promise<number> => {
  const apis = await listApis(db, tenantId);
  const longest = Math.max(
    TOKEN_TTL_S.IdToken,
    TOKEN_TTL_S.AccessToken,
    TOKEN_TTL_S.ClientCredentials,
    ...apis.map((a) => Math.min(a.accessTokenTtlS, MAX_API_TOKEN_TTL_S)),
  );
  return longest + CLOCK_SKEW_S;
};

/** Cache-Control on the JWKS and both discovery documents (oidc-provider sets none). */
export const keyCacheHeaders =
  (maxAgeS: number): Middleware =>
  async (koa, next) => {
    await next();
    const route = koa.oidc?.route;
    if ((route === 'jwks' || route === 'discovery') && koa.status === 200)
      koa.set('cache-control', `public, max-age=${maxAgeS}`);
  };
