/**
 * One oidc-provider instance per tenant, issuer PUBLIC_URL/TENANT_ID/v2.0, made on first use from
 * the tenant's keys and cached until invalidated (tenant deletion) or its keys change (rotation:
 * rebuilt when a key starts signing or retires, and at least every reload interval, oidc/keys.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isGatehouseError, isTenantId } from '@gatehouse/protocol';
import Provider, { type Configuration, errors, type JWK, type KoaContextWithOIDC } from 'oidc-provider';
import type { CloudContext } from '../context.ts';
import { clientSecretMatches } from '../db/at-rest.ts';
import type { GroupCommit } from '../db/group-commit.ts';
import { observeTokenError, observeTokenIssued } from '../metrics/observe.ts';
import type { Authenticator } from '../signin/types.ts';
import { GroupsClaimSetting, getClient } from '../store/clients.ts';
import { loadSigningKeys } from '../store/signing-keys.ts';
import { getTenantSecrets } from '../store/tenants.ts';
import { csrfToken, csrfValid } from '../web/csrf.ts';
import { type ClientLookup, createAdapterFactory, sweepExpired } from './adapter.ts';
import { adminCenterClient, agentApprovalClient } from './admin-client.ts';
import { CLAIMS, SCOPES, toAccount } from './claims.ts';
import { groupsClaims } from './groups-claim.ts';
import { keyCacheHeaders, keyTimings, TOKEN_TTL_S } from './keys.ts';
import { offlineAccessConsent } from './offline-access.ts';
import { providerPageHeaders } from './page-headers.ts';
import { registerPasswordGrant } from './password-grant.ts';
import { grantResourceScopes, resourceFeatures } from './resources.ts';
import { EXTERNAL_SIGNING, localSigningKeys } from './signing.ts';
import { errorPage, logoutPage, signedOutPage } from './views.ts';

export interface OidcDeps {
  authenticator: Authenticator;
  /** The group commit the providers' saves join (db/group-commit.ts); default: each on its own. */
  writes?: GroupCommit;
}

export interface TenantOidc {
  tenantId: string;
  provider: Provider;
  /** Path every route of this tenant lives under: /TENANT_ID/v2.0 */
  prefix: string;
  /** Node request handler of the provider (expects req.url relative to `prefix`). */
  callback: (req: IncomingMessage, res: ServerResponse) => void;
  /** CSRF token for an interaction's forms: HMAC of its uid under the tenant's cookie key. */
  csrfToken(uid: string): string;
  checkCsrf(uid: string, token: unknown): boolean;
  /** Adds to a user's grant the API scopes the request asked for and the client was granted. */
  grantResourceScopes(
    grant: InstanceType<Provider['Grant']>,
    params: { client_id?: unknown; resource?: unknown; scope?: unknown },
  ): Promise<void>;
}

export interface Oidc {
  /** The tenant's provider, or null when there is no such tenant. */
  forTenant(tenantId: string): Promise<TenantOidc | null>;
  /** Drops cached providers (one tenant, or all) so the next request rebuilds from the database. */
  invalidate(tenantId?: string): void;
  close(): void;
}

type ClientWithSecret = {
  clientSecret?: string;
  compareClientSecret(this: ClientWithSecret, actual: string): boolean;
};

const configuration = (
  ctx: CloudContext,
  tenantId: string,
  deps: OidcDeps,
  secrets: { jwks: { keys: JWK[] }; cookieKeys: string[] },
  lookupClient: ClientLookup,
): Configuration => {
  const prefix = `/${tenantId}/v2.0`;
  // Scoped to the tenant's path so two tenants' sessions in one browser never overwrite each other.
  const cookie = { httpOnly: true, sameSite: 'lax' as const, path: prefix };
  return {
    adapter: createAdapterFactory({
      db: ctx.db,
      secrets: ctx.secrets,
      tenantId,
      now: ctx.now,
      getClient: lookupClient,
      writes: deps.writes,
    }),
    jwks: localSigningKeys(secrets.jwks),
    // The admin center and the agent approval page sign in to every tenant with the same public
    // client ids (see admin-client.ts).
    clients: [
      adminCenterClient(ctx.config.publicUrl, tenantId),
      agentApprovalClient(ctx.config.publicUrl, tenantId),
    ],
    cookies: { keys: secrets.cookieKeys, long: cookie, short: { httpOnly: true, sameSite: 'lax' } },
    async findAccount(koa, sub) {
      const user = await deps.authenticator.findUser(tenantId, sub);
      if (!user || user.tenantId !== tenantId) return undefined;
      // The groups claim depends on the client the token is for (its gatehouse_groups setting).
      return toAccount(user, () => groupsClaims(ctx.db, ctx.config.publicUrl, user, koa.oidc.client ?? null));
    },
    extraClientMetadata: {
      // gatehouse_first_party: the sign-in pages skip consent for the tenant's own apps (interactions.ts).
      properties: ['gatehouse_groups', 'gatehouse_first_party'],
      validator(_koa, key, value) {
        if (key !== 'gatehouse_groups' || value === undefined) return;
        const r = GroupsClaimSetting.safeParse(value);
        if (!r.success)
          throw new errors.InvalidClientMetadata(`gatehouse_groups: ${r.error.issues[0]?.message}`);
      },
    },
    scopes: [...SCOPES],
    claims: CLAIMS,
    // Relying parties expect the profile claims in the ID token itself (as Entra issues them).
    conformIdTokenClaims: false,
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    enabledJWA: {
      // Per client (id_token_signed_response_alg); OpenID Connect Discovery requires RS256.
      idTokenSigningAlgValues: ['ES256', 'RS256'],
      userinfoSigningAlgValues: ['ES256', 'RS256'],
      requestObjectSigningAlgValues: ['ES256', 'RS256', 'EdDSA'],
    },
    // Only methods that present the secret itself: the cloud keeps a hash of it, which cannot key
    // client_secret_jwt's HMAC (and must not, or the hash would become the credential).
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    pkce: { required: () => true },
    // Seconds. Refresh tokens rotate, so an active client keeps renewing within the grant's life.
    ttl: {
      // An API's tokens live as long as the API asks (directory/apis.ts); keys.ts counts on these.
      AccessToken: (_koa, token) => token.resourceServer?.accessTokenTTL ?? TOKEN_TTL_S.AccessToken,
      ClientCredentials: (_koa, token) =>
        token.resourceServer?.accessTokenTTL ?? TOKEN_TTL_S.ClientCredentials,
      AuthorizationCode: 60,
      IdToken: TOKEN_TTL_S.IdToken,
      Interaction: 15 * 60,
      Session: 24 * 3600,
      RefreshToken: 14 * 86400,
      Grant: 30 * 86400,
    },
    rotateRefreshToken: true,
    features: {
      devInteractions: { enabled: false },
      externalSigningSupport: EXTERNAL_SIGNING,
      userinfo: { enabled: true },
      revocation: { enabled: true },
      ...resourceFeatures(ctx.db, tenantId),
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(koa, form) {
          koa.body = logoutPage({ form, clientName: koa.oidc.client?.clientName });
        },
        async postLogoutSuccessSource(koa) {
          koa.body = signedOutPage();
        },
      },
    },
    interactions: { url: (_koa, interaction) => `${prefix}/interaction/${interaction.uid}` },
    async renderError(koa: KoaContextWithOIDC, out) {
      koa.type = 'html';
      koa.body = errorPage({ title: 'Sign-in error', message: String(out.error_description ?? out.error) });
    },
  };
};

export const createOidc = (
  ctx: CloudContext,
  deps: OidcDeps,
  lookupClient: ClientLookup = getClient,
): Oidc => {
  const cache = new Map<string, Promise<TenantOidc | null>>();
  // When a tenant's provider must be rebuilt: its signing keys change then (one starts signing or
  // retires), and a rotation made elsewhere (CLI, another node) must be published soon (keys.ts).
  const rebuildAt = new Map<string, number>();
  const timings = keyTimings(ctx.config);

  const build = async (tenantId: string): Promise<TenantOidc | null> => {
    let secrets: Awaited<ReturnType<typeof getTenantSecrets>>;
    try {
      secrets = await getTenantSecrets(ctx, tenantId);
    } catch (err) {
      if (isGatehouseError(err) && err.code === 'not_found') return null;
      throw err;
    }
    const keys = await loadSigningKeys(ctx, tenantId);
    rebuildAt.set(tenantId, Math.min(keys.nextChangeAt ?? Infinity, ctx.now() + timings.reloadMs));
    const prefix = `/${tenantId}/v2.0`;
    const provider = new Provider(
      `${ctx.config.publicUrl}${prefix}`,
      configuration(ctx, tenantId, deps, { ...secrets, jwks: keys.jwks }, lookupClient),
    );
    // Set only behind a trusted TLS-terminating proxy; otherwise X-Forwarded-* could spoof the IP.
    provider.proxy = ctx.config.trustProxy;
    // Client metadata carries the secret's hash (directory/clients.ts). The Client prototype's
    // compareClientSecret is oidc-provider's own hook for hashed secrets (its issue #631).
    (provider.Client.prototype as ClientWithSecret).compareClientSecret = function (actual) {
      return clientSecretMatches(actual, this.clientSecret);
    };
    provider.use(providerPageHeaders);
    provider.use(offlineAccessConsent(provider));
    provider.use(keyCacheHeaders(timings.jwksMaxAgeS));
    registerPasswordGrant(provider, {
      tenantId,
      authenticator: deps.authenticator,
      groups: (user, client) => groupsClaims(ctx.db, ctx.config.publicUrl, user, client),
    });
    const log = ctx.log.child({ tenantId, part: 'oidc' });
    provider.on('server_error', (_koa, err) => log.error({ err }, 'oidc server error'));
    // Token issuance from the provider's own events (metrics/observe.ts), not by patching grants.
    provider.on('grant.success', (koa) => {
      const grant = koa.oidc.params?.grant_type;
      // The password grant answers its refusals itself (oauthError), so they arrive here too.
      if (koa.status >= 400) observeTokenError(grant, (koa.body as { error?: unknown } | undefined)?.error);
      else observeTokenIssued(grant);
    });
    provider.on('grant.error', (koa, err) =>
      observeTokenError(koa.oidc?.params?.grant_type, (err as { error?: unknown }).error),
    );
    // Koa's 'error' event (not in the typings): without a listener Koa writes to stderr itself.
    (provider as unknown as NodeJS.EventEmitter).on('error', (err: unknown) =>
      log.error({ err }, 'oidc error'),
    );
    const csrfKey = secrets.cookieKeys[0] ?? '';
    const binding = (uid: string) => `csrf\0${tenantId}\0${uid}`;
    return {
      tenantId,
      provider,
      prefix,
      callback: provider.callback() as TenantOidc['callback'],
      csrfToken: (uid) => csrfToken(csrfKey, binding(uid)),
      grantResourceScopes: (grant, params) =>
        grantResourceScopes(ctx.db, tenantId, { clientId: String(params.client_id) }, params, grant),
      checkCsrf: (uid, token) => csrfValid(csrfKey, binding(uid), token),
    };
  };

  // Expired rows are already invisible to finds; this only keeps the table small.
  const sweep = setInterval(
    () => void sweepExpired(ctx.db, ctx.now()).catch((err) => ctx.log.warn({ err }, 'oidc sweep failed')),
    10 * 60_000,
  );
  sweep.unref();

  return {
    forTenant(tenantId) {
      if (!isTenantId(tenantId)) return Promise.resolve(null);
      let p = cache.get(tenantId);
      if (p && (rebuildAt.get(tenantId) ?? Infinity) <= ctx.now()) {
        // The old provider finishes the requests it has; the next build sets a new time.
        rebuildAt.delete(tenantId);
        p = undefined;
      }
      if (!p) {
        p = build(tenantId);
        cache.set(tenantId, p);
        // A failed build (e.g. database down) must not be cached; an unknown tenant may be created later.
        p.then(
          (r) => r === null && cache.get(tenantId) === p && cache.delete(tenantId),
          () => cache.get(tenantId) === p && cache.delete(tenantId),
        );
      }
      return p;
    },
    invalidate(tenantId) {
      if (tenantId === undefined) cache.clear();
      else cache.delete(tenantId);
    },
    close() {
      clearInterval(sweep);
    },
  };
};
