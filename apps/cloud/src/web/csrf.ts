/**
 * The CSRF tokens of the cloud's forms (sign-in interactions, the agent approval page): an HMAC of
 * what the form is bound to, under a key derived from the tenant's cookie key, so every cloud node
 * issues and accepts the same token, compared in constant time.
 *
 * Not @fastify/csrf-protection: its check answers a bad token with its own 403 error, where these
 * pages must render again with the user's input and "this page expired"; it keeps one cookie
 * configuration per app; and a sign-in form is already bound to its interaction, whose cookie
 * oidc-provider owns, so it needs no CSRF cookie of its own. The approval page binds its token to
 * the approver's session cookie instead (admin/approver-session.ts).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The token for a form bound to `binding` (an interaction uid, a session). */
export const csrfToken = (key: string | Buffer, binding: string): string =>
  createHmac('sha256', key).update(binding).digest('base64url');

/** Whether `token` (as posted: anything) is the token for `binding`. */
export const csrfValid = (key: string | Buffer, binding: string | undefined, token: unknown): boolean => {
  if (binding === undefined || typeof token !== 'string') return false;
  const want = Buffer.from(csrfToken(key, binding));
  const got = Buffer.from(token);
  return want.length === got.length && timingSafeEqual(want, got);
};
