/**
 * What every part of the cloud receives: configuration, state, logger, secrets and TLS material;
 * and the dispatcher's contract, which the gateway and the scale-out router both fulfil.
 */
import type { AgentOutcome, SealedEnvelope, SignInOutcome, ValidateUser } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { CloudConfig } from './config.ts';
import type { Db } from './db/index.ts';
import type { SecretBox } from './secrets.ts';

export interface ServiceTls {
  /** PEM of the CA that issued the server certificate (agents and tests pin it). */
  caCert: string;
  cert: string;
  key: string;
}

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
}

/** Carries a password validation to one of the tenant's agents. Never throws: failures are outcomes. */
export interface Dispatcher {
  validate(req: CleartextValidation): Promise<ValidationAnswer>;
  /** Agents of the tenant connected to the gateway and heard from recently. */
  activeAgentCount(tenantId: string): Promise<number>;
}

/**
 * Built once, after the ports are bound (listeners.ts), and never changed: the configuration's
 * URLs already carry the real ports. Parts that need each other get them as arguments (server.ts).
 */
export interface CloudContext {
  readonly config: CloudConfig;
  readonly db: Db;
  readonly log: Logger;
  readonly secrets: SecretBox;
  readonly tls: ServiceTls;
  readonly now: () => number;
}
