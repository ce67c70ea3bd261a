import type { ErrorCode } from '@gatehouse/protocol';
import type { Logger } from 'pino';

export interface SignInInput {
  tenantId: string;
  /** What the user typed: a UPN, or the alternate login ID the tenant chose. */
  username: string;
  password: string;
  method: 'browser' | 'password_grant';
  clientId?: string;
  clientIp?: string;
  /** The browser's device cookie, if any (smart lockout treats known devices as familiar). */
  deviceId?: string;
  /** The HTTP request's logger (fastify's req.log, bound to its reqId): the sign-in's log event
   * carries the request id. Not user input, so not part of the input schema. */
  log?: Pick<Logger, 'info'>;
}

export interface SignedInUser {
  id: string;
  tenantId: string;
  upn: string;
  displayName: string | null;
  mail: string | null;
  source: 'cloud' | 'synced';
  roles: string[];
}

export type SignInResult =
  | { ok: true; user: SignedInUser; requestId: string }
  | { ok: false; code: ErrorCode; requestId: string };

/** Home realm discovery by the user name's domain. */
export type Realm =
  | { kind: 'federated'; redirect: string }
  /** Ask for a password; the kind of account is not revealed to the page (no enumeration). */
  | { kind: 'password' };

export interface Authenticator {
  discover(tenantId: string, username: string): Promise<Realm>;
  /** Runs the whole sign-in (authenticator.ts `signIn`, one named function a step): lockout check,
   * cloud hash or agent validation, sign-in log. Never throws for a credential or infrastructure
   * outcome; those come back as `ok: false` with a catalog code. */
  authenticate(input: SignInInput): Promise<SignInResult>;
  /** Loads a user for token claims (after sign-in or on refresh). */
  findUser(tenantId: string, userId: string): Promise<SignedInUser | null>;
}
