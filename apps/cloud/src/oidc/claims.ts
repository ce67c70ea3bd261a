/** What a signed-in user looks like to relying parties: scopes and the claims behind them. */
import type { Account } from 'oidc-provider';
import type { SignedInUser } from '../signin/types.ts';

export const SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;

/** Scope to claims. tid and roles always come with openid, as Entra ID issues them; so does
 * groups, for the clients whose setting asks for it (oidc/groups-claim.ts). */
export const CLAIMS = {
  openid: ['sub', 'tid', 'roles', 'groups'],
  profile: ['name', 'preferred_username', 'upn'],
  email: ['email'],
};

export const userClaims = (user: SignedInUser) => ({
  sub: user.id,
  tid: user.tenantId,
  upn: user.upn,
  preferred_username: user.upn,
  name: user.displayName ?? user.upn,
  email: user.mail ?? undefined,
  roles: user.roles,
});

export const toAccount = (user: SignedInUser, extra?: () => Promise<object>): Account => ({
  accountId: user.id,
  claims: async () => ({ ...userClaims(user), ...(extra ? await extra() : {}) }),
});
