/**
 * Who is at the agent approval page: the approver signs in through the tenant's own OIDC provider,
 * as in the admin center (authorization code + PKCE, the tenant's sign-in pages, smart lockout and
 * sign-in log included), and the page keeps the access token it got in a cookie. Every request
 * looks that token up in the provider and the user in the directory, so a revoked token, a disabled
 * user or a removed role takes effect at once.
 *
 * The code is redeemed at the tenant's token endpoint through fastify's inject, in this process:
 * the public URL may name a balancer this node cannot reach, and the token endpoint is the one that
 * checks the code, its PKCE verifier, its redirect URI and its single use. The verifier is an HMAC
 * of the state under a key of the tenant, so neither leaves the cloud but as a challenge; the
 * state rides in a short-lived cookie that binds the callback to the browser that began.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { CloudContext } from '../context.ts';
import { AGENT_APPROVAL_CLIENT_ID, agentApprovalCallback } from '../oidc/admin-client.ts';
import type { Oidc } from '../oidc/index.ts';
import { getTenantSecrets } from '../store/tenants.ts';
import { getUser, type User } from '../store/users.ts';
import { csrfToken, csrfValid } from '../web/csrf.ts';
import { permissionsOf } from './api.ts';

/** The signed-in approver's access token; __Secure- pins it to HTTPS, the path to one tenant's page. */
const SESSION_COOKIE = '__Secure-gh_approval';
/** The sign-in in progress: its state and the user code to come back to. */
const SIGNIN_COOKIE = '__Secure-gh_approval_signin';
const SIGNIN_TTL_S = 600;
/** oidc-provider's opaque tokens are base64url; anything else is not worth a lookup. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{20,128}$/;

const pagePath = (tenantId: string) => `/${encodeURIComponent(tenantId)}/agents/device`;

/**
 * The same rule as the admin center's agent routes (a registration token needs `hybrid`): a
 * Global Administrator or a Hybrid Identity Administrator of the tenant.
 */
export const canApprove = (user: User): boolean => permissionsOf(user.roles).has('hybrid');

const b64url = (b: Buffer) => b.toString('base64url');

const TokenAnswer = z.object({ access_token: z.string().regex(TOKEN_SHAPE), expires_in: z.number().int() });
const Callback = z.union([
  z.object({ code: z.string().min(1).max(512), state: z.string().max(128) }),
  // Only the code is shown: a crafted link could put any text in the description.
  z.object({ error: z.string().regex(/^[a-z_]{1,64}$/) }),
]);

export interface ApproverSession {
  /** The signed-in user behind the request's cookie, or null (no cookie, or no longer valid). */
  approver(req: FastifyRequest, tenantId: string): Promise<User | null>;
  /** The approval form's CSRF token: bound to the session, so it is worthless without its cookie. */
  csrf(req: FastifyRequest, tenantId: string): Promise<string>;
  csrfValid(req: FastifyRequest, tenantId: string, token: unknown): Promise<boolean>;
  /** Sends the browser to the tenant's sign-in, to come back to `userCode` on the page. */
  signIn(
    reply: FastifyReply,
    tenantId: string,
    opts: { userCode?: string; prompt?: 'login' },
  ): Promise<FastifyReply>;
  /**
   * The callback: redeems the code and sets the session cookie. Returns the user code to go back
   * to, or an error message for the page.
   */
  finish(
    req: FastifyRequest,
    reply: FastifyReply,
    tenantId: string,
  ): Promise<{ userCode?: string } | { error: string }>;
}

/** Keys of one tenant for one purpose, derived from its cookie key so every cloud node agrees. */
const keyOf = async (ctx: CloudContext, tenantId: string, purpose: 'csrf' | 'pkce'): Promise<Buffer> => {
  const { cookieKeys } = await getTenantSecrets(ctx, tenantId);
  // Never an empty HMAC key: a tenant always has one, and a CSRF or PKCE key anyone could compute
  // would be worse than the request failing.
  const key = cookieKeys[0];
  if (!key) throw new Error(`tenant ${tenantId} has no cookie key`);
  return createHmac('sha256', key).update(`gatehouse agents-device ${purpose}`).digest();
};

/** The PKCE verifier of a sign-in: 43 characters, as RFC 7636 asks, never sent to the browser. */
const verifierOf = async (ctx: CloudContext, tenantId: string, state: string) =>
  b64url(
    createHmac('sha256', await keyOf(ctx, tenantId, 'pkce'))
      .update(state)
      .digest(),
  );

const cookieOptions = (tenantId: string, maxAge: number) => ({
  path: pagePath(tenantId),
  secure: true,
  httpOnly: true,
  // Lax: a link from an e-mail is a cross-site navigation, and it must find the session.
  sameSite: 'lax' as const,
  maxAge,
});

const sessionToken = (req: FastifyRequest): string | undefined => {
  const v = req.cookies[SESSION_COOKIE];
  return v && TOKEN_SHAPE.test(v) ? v : undefined;
};

/** The tenant's token endpoint, called in this process: the code for an access token, or null. */
const redeem = async (
  app: FastifyInstance,
  ctx: CloudContext,
  tenantId: string,
  code: string,
  state: string,
) => {
  const res = await app.inject({
    method: 'POST',
    url: `/${encodeURIComponent(tenantId)}/v2.0/token`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: AGENT_APPROVAL_CLIENT_ID,
      code,
      redirect_uri: agentApprovalCallback(ctx.config.publicUrl, tenantId),
      code_verifier: await verifierOf(ctx, tenantId, state),
    }).toString(),
  });
  const answer = TokenAnswer.safeParse(res.statusCode === 200 ? res.json() : null);
  return answer.success ? answer.data : null;
};

export const approverSession = (app: FastifyInstance, ctx: CloudContext, oidc: Oidc): ApproverSession => ({
  async approver(req, tenantId) {
    const token = sessionToken(req);
    const t = token ? await oidc.forTenant(tenantId) : null;
    if (!token || !t) return null;
    const at = await t.provider.AccessToken.find(token).catch(() => undefined);
    if (!at || at.clientId !== AGENT_APPROVAL_CLIENT_ID || !at.accountId) return null;
    const user = await getUser(ctx.db, tenantId, at.accountId);
    return user?.enabled ? user : null;
  },
  async csrf(req, tenantId) {
    return csrfToken(await keyOf(ctx, tenantId, 'csrf'), `agents-device\n${sessionToken(req) ?? ''}`);
  },
  async csrfValid(req, tenantId, token) {
    const session = sessionToken(req);
    return csrfValid(
      await keyOf(ctx, tenantId, 'csrf'),
      session === undefined ? undefined : `agents-device\n${session}`,
      token,
    );
  },
  async signIn(reply, tenantId, opts) {
    const state = b64url(randomBytes(24));
    reply.setCookie(SIGNIN_COOKIE, `${state}.${opts.userCode ?? ''}`, cookieOptions(tenantId, SIGNIN_TTL_S));
    const challenge = b64url(
      createHash('sha256')
        .update(await verifierOf(ctx, tenantId, state))
        .digest(),
    );
    const q = new URLSearchParams({
      client_id: AGENT_APPROVAL_CLIENT_ID,
      response_type: 'code',
      redirect_uri: agentApprovalCallback(ctx.config.publicUrl, tenantId),
      scope: 'openid',
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...(opts.prompt ? { prompt: opts.prompt } : {}),
    });
    return reply.redirect(`/${encodeURIComponent(tenantId)}/v2.0/auth?${q}`, 303);
  },
  async finish(req, reply, tenantId) {
    const [state, userCode] = (req.cookies[SIGNIN_COOKIE] ?? '').split('.');
    reply.clearCookie(SIGNIN_COOKIE, { path: pagePath(tenantId) });
    const q = Callback.safeParse(req.query);
    if (!q.success) return { error: 'The sign-in answer was not understood. Sign in again.' };
    if ('error' in q.data) return { error: `The sign-in did not finish (${q.data.error}). Sign in again.` };
    if (!state || q.data.state !== state)
      return { error: 'The sign-in expired or began in another browser. Sign in again.' };
    const tokens = await redeem(app, ctx, tenantId, q.data.code, state);
    if (!tokens) return { error: 'The sign-in could not be completed. Sign in again.' };
    reply.setCookie(SESSION_COOKIE, tokens.access_token, cookieOptions(tenantId, tokens.expires_in));
    return userCode ? { userCode } : {};
  },
});
