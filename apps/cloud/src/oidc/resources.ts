/**
 * Tokens for APIs through oidc-provider's own features: resource indicators (RFC 8707) name an
 * API registered in store/apis.ts, and the provider issues its access token in the API's
 * format (RFC 9068 JWT, or opaque for an API that introspects), for the scopes an administrator
 * granted the client there. Without a resource indicator the access token stays opaque and is
 * good for userinfo only. Introspection (RFC 7662) answers a client about its own tokens, and an
 * API (authenticated as its introspection client) about tokens issued for it.
 */
import { type Configuration, errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { Db } from '../db/index.ts';
import { apiForClient, apisIntrospectedBy } from '../store/apis.ts';

type Features = NonNullable<Configuration['features']>;
type Client = NonNullable<KoaContextWithOIDC['oidc']['client']>;

/** The resource indicator(s) of a request, as oidc-provider hands them over (one or many). */
const indicators = (resource: unknown): string[] =>
  (Array.isArray(resource) ? resource : resource === undefined ? [] : [resource]).filter(
    (r): r is string => typeof r === 'string',
  );

export const resourceFeatures = (db: Db, tenantId: string) => ({
  resourceIndicators: {
    enabled: true as const,
    // No resource asked for: no API token (userinfo only), as before APIs existed.
    defaultResource: (_koa, _client, oneOf) => oneOf ?? undefined,
    // The code's (or refresh token's) API is the token's unless the client names another.
    useGrantedResource: () => true,
    async getResourceServerInfo(_koa, indicator, client) {
      const found = await apiForClient(db, tenantId, indicator, client.clientId);
      if (!found) throw new errors.InvalidTarget('the resource is not an API this client was granted');
      const { api, scopes } = found;
      return {
        scope: scopes.join(' '),
        audience: api.identifier,
        accessTokenTTL: api.accessTokenTtlS,
        accessTokenFormat: api.tokenFormat,
        ...(api.tokenFormat === 'jwt' ? { jwt: { sign: { alg: api.signingAlg } } } : {}),
      };
    },
  } satisfies Features['resourceIndicators'],
  introspection: {
    enabled: true as const,
    async allowedPolicy(_koa, client, token) {
      if (token.clientId === client.clientId) return true;
      // A public client has no secret to prove it is the API.
      if (client.clientAuthMethod === 'none') return false;
      const aud = (token as { aud?: string | string[] }).aud;
      const auds = indicators(aud);
      if (auds.length === 0) return false;
      const mine = await apisIntrospectedBy(db, tenantId, client.clientId);
      return auds.some((a) => mine.includes(a));
    },
  } satisfies Features['introspection'],
  clientCredentials: { enabled: true as const },
});

/**
 * The API scopes the user's grant gets in the code flow: those the request asked for that the
 * client was granted on each API it named. The tenant consented to them when it granted them.
 */
export const grantResourceScopes = async (
  db: Db,
  tenantId: string,
  client: Pick<Client, 'clientId'> | { clientId: string },
  params: { resource?: unknown; scope?: unknown },
  grant: { addResourceScope(indicator: string, scope: string): unknown },
): Promise<void> => {
  const asked = new Set(String(params.scope ?? '').split(' '));
  for (const indicator of indicators(params.resource)) {
    const found = await apiForClient(db, tenantId, indicator, client.clientId);
    if (!found) continue;
    const scopes = found.scopes.filter((s) => asked.has(s));
    grant.addResourceScope(indicator, scopes.join(' '));
  }
};
