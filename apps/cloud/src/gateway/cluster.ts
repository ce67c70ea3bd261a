/**
 * The scale-out shape's router: sign-ins travel over NATS to whichever cloud node holds one of
 * the tenant's agents. A node subscribes to gatehouse.validate.<tenant> (one queue group, so one
 * node answers) while it holds an agent of that tenant. A node with no local agent seals the
 * password to every active agent of the tenant (keys from the database, as Entra does) and sends
 * only the envelopes: no cloud node, and nothing on NATS, ever sees the password in clear.
 * "No responders" means no node holds an agent: no_agent at once, unless one was seen moments ago
 * (its node died, or it restarts): then the request waits, within its deadline and
 * `reconnectWaitMs`, asking again with short backoff and at once when an agent joins this node.
 * A node that dies mid-request costs at most half the remaining time; the request is then sent
 * once more.
 */
import { RelayedAnswer, RelayedRequest, type SealedEnvelope, sealPassword } from '@gatehouse/protocol';
import { connect, Events, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Db } from '../db/index.ts';
import { clusterRelays } from '../metrics/families.ts';
import type { CleartextValidation, Dispatcher, ValidationAnswer } from '../signin/types.ts';
import { activeAgentKeys } from '../store/agents.ts';
import { type LocalAgents, startBalancer } from './balance.ts';
import { type AgentDispatcher, DEFAULT_MAX_HELD } from './dispatcher.ts';
import type { ClusterRevocation } from './index.ts';
import { startLiveness } from './liveness.ts';
import { type NatsSecurity, natsConnectOptions } from './nats.ts';
import { type CloseDeleted, createNatsRevocation, revokeOverNats } from './revocation.ts';

export type { NatsSecurity } from './nats.ts';

export const subjectFor = (tenantId: string) => `gatehouse.validate.${tenantId}`;
const QUEUE = 'gatehouse-validators';
/** Agent keys are read at most this often per tenant (keys change only at registration/renewal). */
const KEY_CACHE_MS = 2_000;
/** Pauses between asks while a request waits for a reconnecting agent (the last one repeats). */
const POLL_MS = [50, 100, 200, 250];

export interface ClusterOptions {
  natsUrl: string;
  /** TLS with a pinned CA (never unverified), optional client certificate, optional user. */
  security?: NatsSecurity;
  nodeId: string;
  /** This process's id for this start (lockout counts name it; liveness.ts answers for it). */
  incarnation: string;
  /** The same on every node of this deployment and no other (NATS subjects shared by all nodes). */
  clusterId: string;
  db: Db;
  log: Logger;
  now: () => number;
  /** An agent whose stored last_seen_at is older than this is not sealed to (config.storedLiveness). */
  storedLivenessMs: number;
  /** How long after a tenant's agent was last seen anywhere a request waits for one; 0: never. */
  reconnectWaitMs?: number;
  local: AgentDispatcher;
  /** Closes this node's connections of a deleted agent (the gateway's closeDeleted). */
  closeDeleted: CloseDeleted;
  /** This node's agents, for rebalancing (the gateway's); none: this node never moves agents. */
  balance?: LocalAgents;
  /** How often the balancer looks (default DEFAULT_BALANCE_MS). */
  rebalanceMs?: number;
}

export interface ClusterRouter extends Dispatcher {
  /** Called by the gateway when this node gains its first / loses its last agent of a tenant. */
  presence(tenantId: string, present: boolean): void;
  /** Stop taking relayed requests (first step of a graceful stop). */
  stopServing(): void;
  /** Waits for relayed requests in flight (up to `graceMs`), then leaves NATS. */
  close(graceMs: number): Promise<void>;
  /** Deleted agents' connections are closed on whichever node holds them. */
  readonly revocation: ClusterRevocation;
  /** Whether this node is connected to NATS now (readiness). */
  connected(): boolean;
  /** Whether the cloud process of that incarnation is gone (liveness.ts). */
  isGone(incarnation: string): Promise<boolean>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export const createClusterRouter = async (o: ClusterOptions): Promise<ClusterRouter> => {
  const log = o.log.child({ part: 'cluster', node: o.nodeId });
  const nc: NatsConnection = await connect({
    ...natsConnectOptions(o.natsUrl, o.nodeId, o.security),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  log.info({ natsUrl: o.natsUrl }, 'joined the NATS cluster');
  // The client reconnects by itself (forever); readiness only needs to know whether it is now.
  let natsUp = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) natsUp = false;
      else if (s.type === Events.Reconnect) natsUp = true;
    }
  })().catch((err: unknown) => log.warn({ err }, 'NATS status stream ended'));
  const subs = new Map<string, Subscription>();
  const keyCache = new Map<string, { at: number; keys: { id: string; key: string; seenAt: number }[] }>();
  /** When another node last answered for each tenant: its agents were alive then. */
  const answeredAt = new Map<string, number>();
  /** Requests waiting for an agent, per tenant: woken when one joins this node. */
  const waiters = new Map<string, Set<() => void>>();
  const reconnectWaitMs = o.reconnectWaitMs ?? 0;
  let serving = true;
  const revocation = createNatsRevocation(nc, {
    nodeId: o.nodeId,
    log,
    closeDeleted: o.closeDeleted,
    // Nothing new is sealed to a deleted agent's key once its deletion is announced.
    onDeleted: (tenantId) => keyCache.delete(tenantId),
  });
  const liveness = startLiveness(nc, { clusterId: o.clusterId, incarnation: o.incarnation, log });
  let relayedInFlight = 0;
  let held = 0;
  const balancer = o.balance
    ? startBalancer(nc, {
        nodeId: o.nodeId,
        clusterId: o.clusterId,
        log,
        local: o.balance,
        everyMs: o.rebalanceMs,
      })
    : undefined;

  const serve = async (data: Uint8Array, tenantId: string): Promise<ValidationAnswer> => {
    let raw: unknown;
    try {
      raw = JSON.parse(dec.decode(data));
    } catch {
      return { outcome: 'invalid_response' };
    }
    const r = RelayedRequest.safeParse(raw);
    if (!r.success || r.data.tenantId !== tenantId) return { outcome: 'invalid_response' };
    // No waiting here: the sender waits, since another node may hold an agent meanwhile.
    return o.local.validate({ kind: 'relayed', ...r.data }, { hold: false });
  };

  const subscribe = (tenantId: string) => {
    if (subs.has(tenantId) || !serving) return;
    const sub = nc.subscribe(subjectFor(tenantId), {
      queue: QUEUE,
      callback: (err, msg) => {
        if (err) return log.warn({ err: err.message, tenantId }, 'subscription error');
        relayedInFlight++;
        serve(msg.data, tenantId)
          .then((answer) => msg.respond(enc.encode(JSON.stringify({ ...answer, node: o.nodeId }))))
          .catch((e: unknown) => log.error({ err: e, tenantId }, 'relayed request failed'))
          .finally(() => relayedInFlight--);
      },
    });
    subs.set(tenantId, sub);
    log.debug({ tenantId }, 'serving tenant');
  };

  const activeKeys = async (tenantId: string) => {
    const now = o.now();
    const hit = keyCache.get(tenantId);
    if (hit && now - hit.at < KEY_CACHE_MS) return hit.keys;
    const rows = await activeAgentKeys(o.db, tenantId, now - o.storedLivenessMs);
    const keys = rows.map((r) => ({ id: r.id, key: r.hpke_public_key, seenAt: Number(r.last_seen_at) }));
    if (keyCache.size > 10_000) keyCache.clear();
    keyCache.set(tenantId, { at: now, keys });
    return keys;
  };

  /** The relayed request for one attempt: the password sealed to every active agent of the tenant,
   * bound (aad) to the attempt's own deadline. */
  const sealFor = (req: CleartextValidation, keys: { id: string; key: string }[], deadline: number) => {
    const password = enc.encode(req.password);
    const envelopes: Record<string, SealedEnvelope> = {};
    try {
      const to = { tenantId: req.tenantId, requestId: req.requestId, upn: req.user.upn, deadline };
      for (const k of keys) envelopes[k.id] = sealPassword(Buffer.from(k.key, 'base64url'), password, to);
    } finally {
      password.fill(0);
    }
    // The input side of the schema (unbranded): the receiving node parses it as RelayedRequest.
    const relayed: z.input<typeof RelayedRequest> = {
      requestId: req.requestId,
      tenantId: req.tenantId,
      user: req.user,
      deadline,
      envelopes,
    };
    return enc.encode(JSON.stringify(relayed));
  };

  const relay = async (req: CleartextValidation): Promise<ValidationAnswer> => {
    const keys = await activeKeys(req.tenantId);
    if (keys.length === 0) return { outcome: 'no_agent' };
    for (let attempt = 0; attempt < 2; attempt++) {
      const left = req.deadline - o.now();
      if (left <= 0) return { outcome: 'agent_timeout' };
      // The first try leaves room for a second should the answering node die meanwhile. Each try
      // carries its own deadline, so a slow node cannot still bind after this one has moved on
      // (the agent refuses a request past its deadline): one sign-in, at most one directory bind.
      const timeout = attempt === 0 ? Math.max(1, Math.floor(left / 2)) : left;
      const body = sealFor(req, keys, o.now() + timeout);
      try {
        const m = await nc.request(subjectFor(req.tenantId), body, { timeout });
        const a = RelayedAnswer.safeParse(JSON.parse(dec.decode(m.data)));
        if (!a.success) return { outcome: 'invalid_response' };
        const { node, ...answer } = a.data;
        // A node whose agents went away in between: another node may still hold some.
        if (answer.outcome === 'no_agent' && attempt === 0) {
          clusterRelays.inc({ result: 'retried' });
          continue;
        }
        clusterRelays.inc({ result: 'answered' });
        if (answer.outcome !== 'no_agent') noteAnswered(req.tenantId);
        log.debug({ requestId: req.requestId, node, outcome: answer.outcome }, 'relayed');
        return answer;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === '503') {
          clusterRelays.inc({ result: 'no_responders' });
          return { outcome: 'no_agent' };
        }
        clusterRelays.inc({ result: attempt === 0 ? 'retried' : 'failed' });
        log.warn({ requestId: req.requestId, code, attempt }, 'relay attempt failed');
        if (code !== 'TIMEOUT' && attempt === 1) return { outcome: 'agent_error' };
      }
    }
    return { outcome: 'agent_timeout' };
  };

  const noteAnswered = (tenantId: string) => {
    if (answeredAt.size >= 10_000) answeredAt.clear();
    answeredAt.set(tenantId, o.now());
  };

  /** This node's agents first, then whichever node holds one. */
  const route = async (req: CleartextValidation): Promise<ValidationAnswer> => {
    if (o.local.hasUsable(req.tenantId)) {
      const answer = await o.local.validate(req, { hold: false });
      // The last local agent went away mid-request: another node may hold some.
      if (answer.outcome !== 'no_agent') return answer;
    }
    if (o.now() >= req.deadline) return { outcome: 'agent_timeout' };
    return relay(req);
  };

  /** The latest sign of life of any agent of the tenant: here, through another node, or stored. */
  const lastSeenAt = async (tenantId: string) => {
    const stored = (await activeKeys(tenantId)).reduce((m, k) => Math.max(m, k.seenAt), 0);
    return Math.max(o.local.lastSeenAt(tenantId) ?? 0, answeredAt.get(tenantId) ?? 0, stored);
  };

  /** Resolves after `ms`, or as soon as an agent of the tenant joins this node. */
  const pause = (tenantId: string, ms: number) =>
    new Promise<void>((resolve) => {
      let set = waiters.get(tenantId);
      if (!set) {
        set = new Set();
        waiters.set(tenantId, set);
      }
      const s = set;
      const wake = () => {
        clearTimeout(timer);
        s.delete(wake);
        if (s.size === 0 && waiters.get(tenantId) === s) waiters.delete(tenantId);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      s.add(wake);
    });

  /** no_agent, but an agent was seen moments ago: ask again until one is back or the wait ends. */
  const awaitAgent = async (req: CleartextValidation, first: ValidationAnswer): Promise<ValidationAnswer> => {
    const until = Math.min(req.deadline, (await lastSeenAt(req.tenantId)) + reconnectWaitMs);
    if (until <= o.now() || held >= DEFAULT_MAX_HELD) return first;
    held++;
    const since = o.now();
    try {
      let answer = first;
      for (let i = 0; answer.outcome === 'no_agent'; i++) {
        const left = until - o.now();
        if (left <= 0) break;
        await pause(req.tenantId, Math.min(left, POLL_MS[Math.min(i, POLL_MS.length - 1)]!));
        answer = await route(req);
      }
      log.info(
        { requestId: req.requestId, waitedMs: o.now() - since, outcome: answer.outcome },
        'held for a reconnecting agent',
      );
      return answer;
    } finally {
      held--;
    }
  };

  const stopServing = () => {
    serving = false;
    balancer?.leave();
    for (const sub of subs.values()) sub.unsubscribe();
    subs.clear();
  };

  return {
    async validate(req) {
      try {
        const answer = await route(req);
        if (answer.outcome !== 'no_agent' || reconnectWaitMs === 0) return answer;
        return await awaitAgent(req, answer);
      } catch (err) {
        log.error({ err, requestId: req.requestId }, 'routing failed');
        return { outcome: 'agent_error' };
      }
    },
    async activeAgentCount(tenantId) {
      const local = await o.local.activeAgentCount(tenantId);
      return local > 0 ? local : (await activeKeys(tenantId)).length;
    },
    presence(tenantId, present) {
      if (present) {
        subscribe(tenantId);
        for (const wake of [...(waiters.get(tenantId) ?? [])]) wake();
        return;
      }
      const sub = subs.get(tenantId);
      subs.delete(tenantId);
      sub?.unsubscribe();
      log.debug({ tenantId }, 'no longer serving tenant');
    },
    stopServing,
    connected: () => natsUp && !nc.isClosed(),
    isGone: (incarnation) => liveness.isGone(incarnation),
    revocation: {
      watch: (agentId) => revocation.watch(agentId),
      unwatch: (agentId) => revocation.unwatch(agentId),
      revoke: (req) => {
        keyCache.delete(req.tenantId);
        return revokeOverNats(nc, req);
      },
    },
    async close(graceMs) {
      stopServing();
      revocation.close();
      const end = Date.now() + graceMs;
      while (relayedInFlight > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
      await nc.drain().catch(() => nc.close());
    },
  };
};
