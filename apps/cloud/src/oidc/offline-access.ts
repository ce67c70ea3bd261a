/**
 * Refresh tokens in the code flow when an app asks for offline_access and is allowed the
 * refresh_token grant. OpenID Connect Core 11 wants consent for offline access (prompt=consent),
 * and oidc-provider drops offline_access from any request without it, so most relying-party
 * libraries, which do not send prompt=consent, never got a refresh token. Here such a request is
 * given prompt=consent before the provider sees it: the consent step then runs on every such
 * sign-in, as the spec asks. For a first-party app the tenant's registration is that consent and
 * the sign-in pages grant it without a page (interactions.ts); a third-party app's user sees the
 * consent page, which names offline access. A request that names another prompt (prompt=login,
 * prompt=none) keeps oidc-provider's rule: no offline_access.
 *
 * Only plain query requests are rewritten: a request object (JAR) or a pushed request (PAR) is
 * the client's signed or stored statement, so it must say prompt=consent itself.
 */
import type Provider from 'oidc-provider';

type Middleware = Parameters<Provider['use']>[0];

export const offlineAccessConsent =
  (provider: Provider): Middleware =>
  async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/auth') {
      const q = new URLSearchParams(ctx.querystring);
      const scopes = (q.get('scope') ?? '').split(' ');
      const plain = !q.has('prompt') && !q.has('request') && !q.has('request_uri');
      if (plain && scopes.includes('offline_access') && (q.get('response_type') ?? '').includes('code')) {
        const client = await provider.Client.find(q.get('client_id') ?? '').catch(() => undefined);
        if (client?.grantTypeAllowed('refresh_token')) {
          q.set('prompt', 'consent');
          // The provider finds its mount path as originalUrl minus url: both must change alike.
          const raw = ctx.req as typeof ctx.req & { originalUrl?: string };
          const mount = (raw.originalUrl ?? ctx.url).slice(0, -ctx.url.length || undefined);
          ctx.querystring = q.toString();
          raw.originalUrl = `${mount}${ctx.url}`;
        }
      }
    }
    await next();
  };
