/**
 * The hot path of a sign-in: pick one of the tenant's connected agents (least outstanding, ties
 * round robin), seal the password to its HPKE key, send it, and wait for its answer or the
 * deadline. Unlike Entra, a request whose agent drops mid-flight is re-sealed and re-sent to
 * another agent within the same deadline. A request relayed from another cloud node arrives
 * pre-sealed to every agent of the tenant; it then goes to an agent it has an envelope for.
 * A request for a tenant whose last agent left moments ago waits (within its deadline and
 * `reconnectWaitMs`) for an agent to come back: a restart or a node failover costs latency, not a
 * failed sign-in. Never throws: every failure is an outcome.
 */
import { type SealedEnvelope, sealPassword, type ValidateResult } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import { dispatchFailovers, dispatchHeld, dispatchRetries } from '../metrics/families.ts';
import type { Dispatcher, ValidationAnswer, ValidationRequest } from '../signin/types.ts';
import type { AgentConnection, Pending } from './connection.ts';

/** Requests one agent may hold at once before the dispatcher looks elsewhere. */
export const DEFAULT_MAX_IN_FLIGHT = 256;
/** Requests waiting for a reconnecting agent, over all tenants; past it, no_agent at once. */
export const DEFAULT_MAX_HELD = 1_000;

/** Outcomes that say "this agent could not open the envelope": another agent may well succeed. */
const TRY_ELSEWHERE = new Set<string>(['agent_decrypt_failed', 'agent_no_key']);
/** How an agent released before the draining frame refused a request while stopping. */
const LEGACY_SHUTTING_DOWN = 'shutting-down';

interface TenantAgents {
  conns: AgentConnection[];
  rr: number;
}

export interface DispatcherOptions {
  log: Logger;
  now: () => number;
  inactiveAfterMs: number;
  maxInFlight?: number;
  /** How long after a tenant's last agent was seen a request waits for one to (re)connect; 0: never. */
  reconnectWaitMs?: number;
  maxHeld?: number;
  /** A tenant's first connection arrived (true) or its last one left (false). */
  onTenantPresence?: (tenantId: string, present: boolean) => void;
}

export interface ValidateOptions {
  /** Wait for a reconnecting agent (default). The scale-out router does its own waiting, since
   * another node may hold an agent meanwhile. */
  hold?: boolean;
}

const encoder = new TextEncoder();

export class AgentDispatcher implements Dispatcher {
  readonly #tenants = new Map<string, TenantAgents>();
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #inactiveAfterMs: number;
  readonly #maxInFlight: number;
  readonly #onPresence: (tenantId: string, present: boolean) => void;
  readonly #reconnectWaitMs: number;
  readonly #maxHeld: number;
  /** When each tenant whose agents all left was last seen with a usable one. */
  readonly #seenAt = new Map<string, number>();
  /** Requests waiting for their tenant's agent to come back, with the timer that ends the wait. */
  readonly #held = new Map<string, Map<Pending, ReturnType<typeof setTimeout>>>();
  readonly #mayHold = new WeakSet<Pending>();
  /** Connections closed because their agent was deleted: nobody waits for those to come back. */
  readonly #revoked = new WeakSet<AgentConnection>();
  #heldCount = 0;
  #inFlight = 0;

  constructor(opts: DispatcherOptions) {
    this.#log = opts.log;
    this.#now = opts.now;
    this.#inactiveAfterMs = opts.inactiveAfterMs;
    this.#maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#reconnectWaitMs = opts.reconnectWaitMs ?? 0;
    this.#maxHeld = opts.maxHeld ?? DEFAULT_MAX_HELD;
    this.#onPresence = opts.onTenantPresence ?? (() => {});
  }

  /** Requests waiting for an answer (graceful shutdown waits for zero). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Requests waiting for a reconnecting agent. */
  get held(): number {
    return this.#heldCount;
  }

  /** Whether this node can serve the tenant itself (some local agent is usable now). */
  hasUsable(tenantId: string): boolean {
    const cutoff = this.#now() - this.#inactiveAfterMs;
    return this.connectionsOf(tenantId).some((c) => c.usable(cutoff) && !c.draining);
  }

  /** A connection that said hello joins its tenant's pool. */
  add(conn: AgentConnection): void {
    let t = this.#tenants.get(conn.tenantId);
    if (!t) {
      t = { conns: [], rr: 0 };
      this.#tenants.set(conn.tenantId, t);
      this.#onPresence(conn.tenantId, true);
    }
    if (!t.conns.includes(conn)) t.conns.push(conn);
    this.#seenAt.delete(conn.tenantId);
    this.#release(conn.tenantId);
  }

  /** The agent of this connection was deleted; call before closing it, so that no request waits for
   * it to reconnect (it cannot: its certificate is refused). */
  revoked(conn: AgentConnection): void {
    this.#revoked.add(conn);
  }

  /** A closed connection leaves the pool; its in-flight requests go to another agent. */
  remove(conn: AgentConnection): void {
    const t = this.#tenants.get(conn.tenantId);
    if (t) {
      t.conns = t.conns.filter((c) => c !== conn);
      if (t.conns.length === 0) {
        this.#tenants.delete(conn.tenantId);
        this.#lastSeen(conn);
        this.#onPresence(conn.tenantId, false);
      }
    }
    const inFlight = [...conn.pending.values()];
    conn.pending.clear();
    for (const p of inFlight) {
      if (p.done) continue;
      this.#log.info(
        { agentId: conn.agentId, requestId: p.req.requestId },
        'agent dropped mid-request; failing over',
      );
      dispatchFailovers.inc();
      this.#sendTo(p, this.#pick(p.req, p.tried));
    }
  }

  /** Connected, ready agents of a tenant (for sync requests and tests). */
  connectionsOf(tenantId: string): readonly AgentConnection[] {
    return this.#tenants.get(tenantId)?.conns ?? [];
  }

  async activeAgentCount(tenantId: string): Promise<number> {
    const cutoff = this.#now() - this.#inactiveAfterMs;
    const ids = new Set<string>();
    for (const c of this.connectionsOf(tenantId)) if (c.usable(cutoff)) ids.add(c.agentId);
    return ids.size;
  }

  validate(req: ValidationRequest, opts: ValidateOptions = {}): Promise<ValidationAnswer> {
    try {
      const now = this.#now();
      if (now >= req.deadline) return Promise.resolve({ outcome: 'agent_timeout' });
      // A pre-sealed request was relayed by another node: that node does the waiting.
      const hold = opts.hold !== false && req.kind === 'cleartext' && this.#reconnectWaitMs > 0;
      const first = this.#pick(req, null);
      if (typeof first === 'string' && !(hold && first === 'no_agent' && this.#holdUntil(req) > now))
        return Promise.resolve({ outcome: first });
      this.#inFlight++;
      return new Promise<ValidationAnswer>((resolve) => {
        const p: Pending = {
          req,
          password: req.kind === 'cleartext' ? encoder.encode(req.password) : null,
          tried: new Set(),
          conn: null,
          timer: undefined,
          done: false,
          resolve,
        };
        if (hold) this.#mayHold.add(p);
        p.timer = setTimeout(
          () =>
            this.#finish(
              p,
              this.#isHeld(p)
                ? { outcome: 'no_agent' }
                : { outcome: 'agent_timeout', agentId: p.conn?.agentId },
            ),
          req.deadline - now,
        );
        this.#sendTo(p, first);
      });
    } catch (err) {
      this.#log.error({ err, requestId: req.requestId }, 'dispatch failed');
      return Promise.resolve({ outcome: 'agent_error' });
    }
  }

  /** An agent's answer; only the connection the request was sent to can answer it. */
  onResult(conn: AgentConnection, msg: ValidateResult): void {
    const p = conn.pending.get(msg.id);
    if (!p) {
      // Already answered by the deadline (or never ours): the user has moved on.
      this.#log.warn({ agentId: conn.agentId, requestId: msg.id, outcome: msg.outcome }, 'agent_late');
      return;
    }
    conn.pending.delete(msg.id);
    // An agent of the release before the draining frame refuses what arrives while it stops this
    // way: during a rolling upgrade of the agents that sign-in is moved, not failed.
    const legacyDrain = msg.outcome === 'agent_error' && msg.directoryCode === LEGACY_SHUTTING_DOWN;
    if (legacyDrain) conn.draining = true;
    const reason = legacyDrain ? 'draining' : TRY_ELSEWHERE.has(msg.outcome) ? 'decrypt' : null;
    const next = reason ? this.#pick(p.req, p.tried) : null;
    if (reason && next && typeof next !== 'string') {
      const { agentId } = conn;
      this.#log.warn(
        { agentId, requestId: msg.id, outcome: msg.outcome, reason },
        'retrying on another agent',
      );
      dispatchRetries.inc({ reason });
      this.#sendTo(p, next);
      return;
    }
    const { outcome, server, directoryCode, agentMs, directoryMs, user } = msg;
    const jit = user ? { user } : {};
    this.#finish(p, { outcome, agentId: conn.agentId, server, directoryCode, agentMs, directoryMs, ...jit });
  }

  /** Least outstanding among usable agents not tried yet; the rotating start breaks ties. */
  #pick(
    req: ValidationRequest,
    tried: Set<AgentConnection> | null,
  ): AgentConnection | 'no_agent' | 'agent_overloaded' {
    const t = this.#tenants.get(req.tenantId);
    if (!t) return 'no_agent';
    const n = t.conns.length;
    const start = t.rr++ % n;
    const cutoff = this.#now() - this.#inactiveAfterMs;
    let best: AgentConnection | null = null;
    let full = false;
    for (let i = 0; i < n; i++) {
      const c = t.conns[(start + i) % n]!;
      if (tried?.has(c) || !c.usable(cutoff) || c.draining) continue;
      if (req.kind === 'relayed' && !Object.hasOwn(req.envelopes, c.agentId)) continue;
      if (c.pending.size >= this.#maxInFlight) {
        full = true;
        continue;
      }
      if (best === null || c.pending.size < best.pending.size) best = c;
    }
    return best ?? (full ? 'agent_overloaded' : 'no_agent');
  }

  #sendTo(p: Pending, target: AgentConnection | 'no_agent' | 'agent_overloaded'): void {
    let c = target;
    while (!p.done) {
      if (typeof c === 'string') {
        if (c === 'no_agent' && this.#hold(p)) return;
        this.#finish(p, { outcome: c });
        return;
      }
      p.tried.add(c);
      const { req } = p;
      try {
        const { enc, ct } = this.#envelopeFor(p, c);
        p.conn = c;
        c.pending.set(req.requestId, p);
        const { requestId: id, tenantId, user, deadline } = req;
        const sentAt = this.#now();
        // The typed send, with the frame as a literal so that the compiler checks it field by field
        // against Validate. False: the socket is closing (the agent hung up); fail over now.
        if (!c.send({ type: 'validate', id, tenantId, user, enc, ct, deadline, sentAt }))
          throw new Error('the agent connection is closing');
        return;
      } catch (err) {
        c.pending.delete(req.requestId);
        this.#log.warn({ err, agentId: c.agentId, requestId: req.requestId }, 'could not send to agent');
        dispatchRetries.inc({ reason: 'send' });
        c = this.#pick(req, p.tried);
      }
    }
  }

  #envelopeFor(p: Pending, c: AgentConnection): SealedEnvelope {
    const { req } = p;
    if (req.kind === 'relayed') {
      const given = req.envelopes[c.agentId];
      if (!given) throw new Error('no envelope for this agent');
      return given;
    }
    if (!p.password) throw new Error('the password was already wiped');
    const { tenantId, requestId, deadline } = req;
    return sealPassword(c.hpkeKey, p.password, { tenantId, requestId, upn: req.user.upn, deadline });
  }

  /** When the tenant last had a live, ready agent here: now while one is connected. */
  lastSeenAt(tenantId: string): number | undefined {
    const cutoff = this.#now() - this.#inactiveAfterMs;
    if (this.connectionsOf(tenantId).some((c) => c.lastHeardAt >= cutoff)) return this.#now();
    return this.#seenAt.get(tenantId);
  }

  /** Until when a request may wait for its tenant's agent to come back (0: it may not). */
  #holdUntil(req: ValidationRequest): number {
    const seen = this.lastSeenAt(req.tenantId);
    return seen === undefined ? 0 : Math.min(req.deadline, seen + this.#reconnectWaitMs);
  }

  /** The tenant's last agent left. One that was alive until now (closed, not silent) is likely to
   * reconnect: a restart, or its cloud node died. */
  #lastSeen(conn: AgentConnection): void {
    const now = this.#now();
    if (this.#reconnectWaitMs === 0 || !conn.ready || this.#revoked.has(conn)) return;
    if (conn.lastHeardAt < now - this.#inactiveAfterMs) return;
    if (this.#seenAt.size >= 10_000) {
      for (const [t, at] of this.#seenAt) if (at <= now - this.#reconnectWaitMs) this.#seenAt.delete(t);
    }
    this.#seenAt.set(conn.tenantId, now);
  }

  /** Parks a request until an agent of its tenant is ready, or its wait ends (then no_agent). */
  #hold(p: Pending): boolean {
    if (!this.#mayHold.has(p) || this.#heldCount >= this.#maxHeld) return false;
    const wait = this.#holdUntil(p.req) - this.#now();
    if (wait <= 0) return false;
    const { tenantId } = p.req;
    let waiting = this.#held.get(tenantId);
    if (!waiting) {
      waiting = new Map();
      this.#held.set(tenantId, waiting);
    }
    const end = () =>
      // Agents back but every one full until the end: what it would have got had it come now.
      this.#finish(p, { outcome: this.#tenants.has(tenantId) ? 'agent_overloaded' : 'no_agent' });
    waiting.set(p, setTimeout(end, wait));
    this.#heldCount++;
    dispatchHeld.inc();
    this.#log.debug(
      { tenantId, requestId: p.req.requestId, waitMs: wait },
      'waiting for an agent to reconnect',
    );
    return true;
  }

  #isHeld(p: Pending): boolean {
    return this.#held.get(p.req.tenantId)?.has(p) ?? false;
  }

  #unhold(p: Pending): void {
    const waiting = this.#held.get(p.req.tenantId);
    const timer = waiting?.get(p);
    if (!waiting || timer === undefined) return;
    clearTimeout(timer);
    waiting.delete(p);
    this.#heldCount--;
    if (waiting.size === 0) this.#held.delete(p.req.tenantId);
  }

  /** An agent of the tenant is ready, or one has a free slot again: waiting requests go, oldest
   * first, as far as the agents have room (the rest go as answers free slots). */
  #release(tenantId: string): void {
    const waiting = this.#held.get(tenantId);
    if (!waiting) return;
    let sent = 0;
    for (const p of [...waiting.keys()]) {
      const next = this.#pick(p.req, p.tried);
      if (next === 'agent_overloaded') break;
      this.#unhold(p);
      this.#sendTo(p, next);
      sent++;
    }
    if (sent > 0) this.#log.info({ tenantId, sent }, 'agent back; held requests sent');
  }

  #finish(p: Pending, answer: ValidationAnswer): void {
    if (p.done) return;
    p.done = true;
    this.#inFlight--;
    clearTimeout(p.timer);
    this.#unhold(p);
    if (p.conn?.pending.get(p.req.requestId) === p) p.conn.pending.delete(p.req.requestId);
    // The cleartext copy is ours; wipe it rather than leave it for the garbage collector.
    p.password?.fill(0);
    p.resolve(answer);
    // A slot may have come free for a request waiting behind a full agent.
    const { tenantId } = p.req;
    if (this.#held.has(tenantId)) queueMicrotask(() => this.#release(tenantId));
  }

  /** Fails every request still waiting (shutdown). */
  closeAll(): void {
    for (const waiting of [...this.#held.values()])
      for (const p of [...waiting.keys()]) this.#finish(p, { outcome: 'no_agent' });
    for (const t of this.#tenants.values()) {
      for (const c of t.conns) {
        for (const p of c.pending.values()) this.#finish(p, { outcome: 'no_agent', agentId: c.agentId });
        c.pending.clear();
      }
    }
    this.#tenants.clear();
  }
}
