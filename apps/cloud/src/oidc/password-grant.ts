/**
 * The OAuth 2 resource owner password grant for legacy clients (mail clients, scripts). It runs the
 * same sign-in as the browser (lockout, cloud hash or agent, sign-in log); the tenant's legacy
 * authentication switch is enforced by the authenticator. Failures answer with the catalog: `error`
 * is the OAuth error, `error_code` our code, and retryable outcomes carry Retry-After.
 */
import type { ErrorCode } from '@gatehouse/protocol';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { z } from 'zod';
import type { Authenticator } from '../signin/types.ts';
import { oauthErrorBody } from '../web/errors.ts';
import { requestLogOf } from '../web/request-log.ts';
import { SCOPES, userClaims } from './claims.ts';
import type { groupsClaims } from './groups-claim.ts';

const Params = z.object({
  username: z.string().min(1).max(256),
  password: z.string().min(1).max(1024),
  scope: z.string().max(1024).optional(),
});

/** Answers the token request with the catalog's OAuth error (web/errors.ts has the shape). */
export const oauthError = (koa: KoaContextWithOIDC, code: ErrorCode, requestId?: string): void => {
  const { status, retryAfter, body } = oauthErrorBody(code, requestId);
  koa.status = status;
  if (retryAfter !== undefined) koa.set('Retry-After', String(retryAfter));
  koa.body = body;
};

export const registerPasswordGrant = (
  provider: Provider,
  deps: {
    tenantId: string;
    authenticator: Authenticator;
    /** The client's groups claim for the user (oidc/groups-claim.ts). */
    groups?: (user: { id: string; tenantId: string }, client: unknown) => ReturnType<typeof groupsClaims>;
  },
): void => {
  provider.registerGrantType(
    'password',
    async (koa) => {
      const parsed = Params.safeParse(koa.oidc.params);
      if (!parsed.success) return oauthError(koa, 'validation_failed');
      const { username, password } = parsed.data;
      const { client } = koa.oidc;
      const result = await deps.authenticator.authenticate({
        tenantId: deps.tenantId,
        username,
        password,
        method: 'password_grant',
        clientId: client.clientId,
        clientIp: koa.ip,
        log: requestLogOf(koa.req),
      });
      if (!result.ok) return oauthError(koa, result.code, result.requestId);

      const supported = new Set<string>(SCOPES);
      const requested = (parsed.data.scope ?? 'openid').split(' ').filter((s) => supported.has(s));
      if (!client.grantTypeAllowed('refresh_token')) {
        const i = requested.indexOf('offline_access');
        if (i >= 0) requested.splice(i, 1);
      }
      const scopes = new Set(requested);
      const user = result.user;

      const grant = new provider.Grant({ accountId: user.id, clientId: client.clientId });
      grant.addOIDCScope(scopes);
      const grantId = await grant.save();
      const scope = grant.getOIDCScopeFiltered(scopes);

      const at = new provider.AccessToken({
        accountId: user.id,
        client,
        grantId,
        gty: 'password',
        scope,
        expiresWithSession: false,
      });
      const accessToken = await at.save();

      let refreshToken: string | undefined;
      if (scopes.has('offline_access')) {
        const rt = new provider.RefreshToken({
          accountId: user.id,
          client,
          grantId,
          gty: 'password',
          scope,
          rotations: 0,
          authTime: Math.floor(Date.now() / 1000),
          expiresWithSession: false,
        });
        refreshToken = await rt.save();
      }

      let idToken: string | undefined;
      if (scopes.has('openid')) {
        const groups = deps.groups ? await deps.groups(user, client) : {};
        const token = new provider.IdToken(
          { ...userClaims(user), ...groups, auth_time: Math.floor(Date.now() / 1000) },
          { ctx: koa },
        );
        // The claims mask follows the granted scope (a property oidc-provider's own grants set too).
        (token as unknown as { scope: string }).scope = scope;
        idToken = await token.issue({ use: 'idtoken' });
      }

      koa.body = {
        access_token: accessToken,
        expires_in: at.expiration,
        token_type: 'Bearer',
        scope,
        ...(idToken ? { id_token: idToken } : {}),
        ...(refreshToken ? { refresh_token: refreshToken } : {}),
      };
    },
    ['username', 'password', 'scope'],
  );
};
