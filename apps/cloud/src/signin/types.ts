import type {
  AgentOutcome,
  ErrorCode,
  SealedEnvelope,
  SignInOutcome,
  SyncedUser,
  ValidateUser,
} from '@gatehouse/protocol';
import { TenantId } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { User } from '../store/users.ts';

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

/** The input's bounds: every entry point's sign-in goes through this one parse. */
export const SignInInputSchema = z.object({
  tenantId: TenantId,
  username: z.string().max(1024),
  password: z.string().max(1024),
  method: z.enum(['browser', 'password_grant']),
  clientId: z.string().max(256).optional(),
  clientIp: z.string().max(64).optional(),
  deviceId: z.string().max(128).optional(),
});

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

// ---- the dispatcher's contract: sign-in asks, the gateway (or the scale-out router) answers ----

interface ValidationBase {
  tenantId: string;
  requestId: string;
  user: ValidateUser;
  /** Absolute deadline, ms since epoch. */
  deadline: number;
}

/** A sign-in on this node: the dispatcher seals the password to the agent it picks. */
export interface CleartextValidation extends ValidationBase {
  kind: 'cleartext';
  password: string;
}

/** A request relayed from another cloud node, which sealed the password to every active agent of
 * the tenant and never sent it in clear: only the agents it has an envelope for may take it. */
export interface RelayedValidation extends ValidationBase {
  kind: 'relayed';
  envelopes: Readonly<Record<string, SealedEnvelope>>;
}

export type ValidationRequest = CleartextValidation | RelayedValidation;

export interface ValidationAnswer {
  /** What the agent reported, or an infrastructure outcome decided by the cloud. */
  outcome:
    | AgentOutcome
    | Extract<SignInOutcome, 'no_agent' | 'agent_timeout' | 'agent_overloaded' | 'invalid_response'>;
  agentId?: string;
  server?: string;
  directoryCode?: string;
  agentMs?: number;
  directoryMs?: number;
  /** A just-in-time lookup whose password was right: the user's attributes (signin/jit.ts). */
  user?: SyncedUser;
}

/** Carries a password validation to one of the tenant's agents. Never throws: failures are outcomes. */
export interface Dispatcher {
  validate(req: CleartextValidation): Promise<ValidationAnswer>;
  /** Agents of the tenant connected to the gateway and heard from recently. */
  activeAgentCount(tenantId: string): Promise<number>;
}

export const toSignedInUser = (u: User): SignedInUser => ({
  id: u.id,
  tenantId: u.tenantId,
  upn: u.upn,
  displayName: u.displayName,
  mail: u.mail,
  source: u.source,
  roles: u.roles,
});
