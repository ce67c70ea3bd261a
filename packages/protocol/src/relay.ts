/**
 * The scale-out relay between cloud nodes (NATS request/reply), beside the agent channel's
 * messages: a node without the tenant's agent sends the request with the password already sealed
 * to every active agent of the tenant, so no other node, and nothing on NATS, sees it in clear.
 * The fields a relayed request shares with the agent's `validate` frame are the same schemas, so
 * whatever one boundary accepts the next one does too.
 */
import { z } from 'zod';
import { agentOutcomes } from './errors.ts';
import { hpkeSeal } from './hpke.ts';
import { Id, TenantId } from './ids.ts';
import { aad, b64u, SyncedUser, ValidateUser } from './messages.ts';

/** A password sealed with HPKE to one agent's key (base64url), as the agent receives it. */
export const SealedEnvelope = z.object({ enc: b64u.min(1), ct: b64u.min(1) });
export type SealedEnvelope = z.infer<typeof SealedEnvelope>;

/** What a sealed password is bound to (the agent checks the same `aad`). */
export interface SealBinding {
  tenantId: string;
  requestId: string;
  upn: string;
  deadline: number;
}

/**
 * Seals a password to one agent's raw X25519 key, bound to one request. The only place the cloud
 * seals: the local dispatcher (one agent) and the relay (every agent of the tenant) both call it.
 */
export const sealPassword = (
  publicKey: Uint8Array,
  password: Uint8Array,
  to: SealBinding,
): SealedEnvelope => {
  const s = hpkeSeal(publicKey, password, aad(to.tenantId, to.requestId, to.upn, to.deadline));
  return { enc: Buffer.from(s.enc).toString('base64url'), ct: Buffer.from(s.ct).toString('base64url') };
};

/** NATS: a sign-in relayed to the node holding an agent; only agents with an envelope may take it. */
export const RelayedRequest = z.object({
  requestId: Id,
  tenantId: TenantId,
  user: ValidateUser,
  deadline: z.number().int().positive(),
  envelopes: z.record(Id, SealedEnvelope),
});
export type RelayedRequest = z.infer<typeof RelayedRequest>;

/** Outcomes the serving node may answer with: the agent's, or one it decided itself. */
export const relayOutcomes = [
  ...agentOutcomes,
  'no_agent',
  'agent_timeout',
  'agent_overloaded',
  'invalid_response',
] as const;

/** NATS: the serving node's answer. */
export const RelayedAnswer = z.object({
  outcome: z.enum(relayOutcomes),
  agentId: Id.optional(),
  server: z.string().max(512).optional(),
  directoryCode: z.string().max(64).optional(),
  agentMs: z.number().nonnegative().optional(),
  directoryMs: z.number().nonnegative().optional(),
  /** A just-in-time lookup's user (messages.ts ValidateResult.user). */
  user: SyncedUser.optional(),
  /** The node that answered (logs). */
  node: z.string().max(64).optional(),
});
export type RelayedAnswer = z.infer<typeof RelayedAnswer>;

/**
 * NATS, every few seconds from every serving node: how many agent connections it holds. Each node
 * compares itself with the others' shares and asks some of its agents to move when it holds more
 * than its share (gateway/balance.ts). `leaving`: the node is stopping; count it out at once.
 */
export const NodeLoad = z.object({
  node: z.string().min(1).max(64),
  agents: z.number().int().nonnegative(),
  leaving: z.boolean().optional(),
});
export type NodeLoad = z.infer<typeof NodeLoad>;
