/**
 * The CSP of the pages oidc-provider renders itself: the form_post response, the logout
 * confirmation, the post-logout page and its errors. They get the same policy as our own pages,
 * with two additions only they need: the hash of form_post's one inline script (oidc-provider adds
 * it to `script-src` when that directive exists), and in `form-action` the client's registered
 * redirect or post-logout URI, which those forms post to or redirect to.
 */
import type Provider from 'oidc-provider';
import { formTarget, pageCsp } from '../web/page.ts';

type Middleware = Parameters<Provider['use']>[0];
type Ctx = Parameters<Middleware>[0];

const HASH = /'sha256-[A-Za-z0-9+/=]+'/g;

/** Where this request's forms may lead: only URIs the client registered. */
const targets = (ctx: Ctx): (string | undefined)[] => {
  const client = ctx.oidc?.client;
  const params = (ctx.oidc?.params ?? {}) as Record<string, unknown>;
  if (!client) return [];
  const out: (string | undefined)[] = [];
  const { redirect_uri: redirect, post_logout_redirect_uri: postLogout } = params;
  if (typeof redirect === 'string' && client.redirectUriAllowed(redirect)) out.push(formTarget(redirect));
  if (typeof postLogout === 'string' && client.postLogoutRedirectUriAllowed(postLogout))
    out.push(formTarget(postLogout));
  return out;
};

export const providerPageHeaders: Middleware = async (ctx, next) => {
  // 'none' is a placeholder: it is there so oidc-provider finds a script-src to add its hash to.
  ctx.set('content-security-policy', `${pageCsp()}; script-src 'none'`);
  await next();
  if (!ctx.response.is('html')) return;
  const hashes = ctx.response.get('content-security-policy').match(HASH) ?? [];
  ctx.set(
    'content-security-policy',
    `${pageCsp(targets(ctx))}; script-src ${hashes.length ? hashes.join(' ') : "'none'"}`,
  );
};
