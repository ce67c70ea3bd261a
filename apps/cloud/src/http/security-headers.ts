/**
 * Response headers every answer of the public HTTPS port carries, set once for the whole app with
 * @fastify/helmet (its onRequest hook writes them on the raw response, so they also reach the
 * answers oidc-provider writes itself after a hijack). This is the one place that sets them; what
 * varies by answer is only the CSP: server-rendered pages replace it with their own (`pageCsp` in
 * page.ts, and oidc/page-headers.ts for the pages oidc-provider renders), the admin center with its
 * script-allowing one (admin/index.ts). This default is for everything else: JSON, redirects, errors.
 */
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

/** One year, the value preload lists ask for; the cloud only ever speaks HTTPS on this port. */
export const HSTS_MAX_AGE_S = 31_536_000;
/** For a cloud on `localhost` (the demo, a developer's machine): see hstsMaxAge. */
export const HSTS_LOCALHOST_MAX_AGE_S = 300;

/**
 * A browser applies HSTS to a host name on every port, so a year on `localhost` would turn every
 * other local development server of that browser to HTTPS for a year. IP literals are ignored by
 * browsers anyway (RFC 6797 section 8.1.1); everything else gets the full year.
 */
export const hstsMaxAge = (publicUrl: string): number => {
  const host = new URL(publicUrl).hostname;
  return host === 'localhost' || host.endsWith('.localhost') ? HSTS_LOCALHOST_MAX_AGE_S : HSTS_MAX_AGE_S;
};

export const registerSecurityHeaders = (app: FastifyInstance, publicUrl: string): void => {
  app.register(helmet, {
    // Nothing served without its own policy needs to load, frame or submit anything.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'none'"],
        'base-uri': ["'none'"],
        'form-action': ["'none'"],
        'frame-ancestors': ["'none'"],
      },
    },
    // includeSubDomains: names under the cloud's own host are the operator's; tenants live in paths.
    // No preload: that is a decision for whoever owns the domain, not for the software.
    strictTransportSecurity: { maxAge: hstsMaxAge(publicUrl), includeSubDomains: true, preload: false },
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // Off: same-origin would cut window.opener for relying parties that sign in in a popup (the
    // callback page on their origin posts the result back to the window that opened it).
    crossOriginOpenerPolicy: false,
    // The default 'same-origin' only affects no-cors loads (img, script); discovery, JWKS and the
    // token endpoint are fetched with CORS, which oidc-provider answers itself.
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
};
