/** What a signed-in user looks like to relying parties: scopes and the claims behind them. */
import type { Account } from 'oidc-provider';
import type { SignedInUser } from '../signin/types.ts';

export const SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;

/** Scope to claims. tid and roles always come with openid, as Entra ID issues them. */
export const CLAIMS = {
  openid: ['sub', 'tid', 'roles'],
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

export const toAccount = (user: SignedInUser): Account => ({
  accountId: user.id,
  claims: () => userClaims(user),
});
