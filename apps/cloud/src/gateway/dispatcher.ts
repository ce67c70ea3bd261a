/**
 * The hot path of a sign-in: pick one of the tenant's connected agents (least outstanding, ties
 * round robin), seal the password to its HPKE key, send it, and wait for its answer or the
 * deadline. Unlike Entra, a request whose agent drops mid-flight is re-sealed and re-sent to
 * another agent within the same deadline. A request relayed from another cloud node arrives
 * pre-sealed to every agent of the tenant; it then goes to an agent it has an envelope for.
 * Never throws: every failure is an outcome.
 */
import { aad, hpkeSeal, type ValidateResult } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { Dispatcher, SealedEnvelope, ValidationAnswer, ValidationRequest } from '../context.ts';
import type { AgentConnection, Pending } from './connection.ts';

/** Requests one agent may hold at once before the dispatcher looks elsewhere. */
export const DEFAULT_MAX_IN_FLIGHT = 256;

/** Outcomes that say "this agent could not open the envelope": another agent may well succeed. */
const TRY_ELSEWHERE = new Set<string>(['agent_decrypt_failed', 'agent_no_key']);
/** What a draining agent answers to a request it will not start (it finishes what it holds). */
export const SHUTTING_DOWN = 'shutting-down';

interface TenantAgents {
  conns: AgentConnection[];
  rr: number;
}

export interface DispatcherOptions {
  log: Logger;
  now: () => number;
  inactiveAfterMs: number;
  maxInFlight?: number;
  /** A tenant's first connection arrived (true) or its last one left (false). */
  onTenantPresence?: (tenantId: string, present: boolean) => void;
}

const encoder = new TextEncoder();

export class AgentDispatcher implements Dispatcher {
  readonly #tenants = new Map<string, TenantAgents>();
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #inactiveAfterMs: number;
  readonly #maxInFlight: number;
  readonly #onPresence: (tenantId: string, present: boolean) => void;
  /** Agents that said they are shutting down: they get nothing new on this connection. */
  readonly #draining = new WeakSet<AgentConnection>();
  #inFlight = 0;

  constructor(opts: DispatcherOptions) {
    this.#log = opts.log;
    this.#now = opts.now;
    this.#inactiveAfterMs = opts.inactiveAfterMs;
    this.#maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#onPresence = opts.onTenantPresence ?? (() => {});
  }

  /** Requests waiting for an answer (graceful shutdown waits for zero). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Whether this node can serve the tenant itself (some local agent is usable now). */
  hasUsable(tenantId: string): boolean {
    const cutoff = this.#now() - this.#inactiveAfterMs;
    return this.connectionsOf(tenantId).some((c) => c.usable(cutoff) && !this.#draining.has(c));
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
  }

  /** A closed connection leaves the pool; its in-flight requests go to another agent. */
  remove(conn: AgentConnection): void {
    const t = this.#tenants.get(conn.tenantId);
    if (t) {
      t.conns = t.conns.filter((c) => c !== conn);
      if (t.conns.length === 0) {
        this.#tenants.delete(conn.tenantId);
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

  validate(req: ValidationRequest): Promise<ValidationAnswer> {
    try {
      const now = this.#now();
      if (now >= req.deadline) return Promise.resolve({ outcome: 'agent_timeout' });
      const first = this.#pick(req, null);
      if (typeof first === 'string') return Promise.resolve({ outcome: first });
      this.#inFlight++;
      return new Promise<ValidationAnswer>((resolve) => {
        const p: Pending = {
          req,
          password: req.envelopes ? null : encoder.encode(req.password),
          tried: new Set(),
          conn: null,
          timer: undefined,
          done: false,
          resolve,
        };
        p.timer = setTimeout(
          () => this.#finish(p, { outcome: 'agent_timeout', agentId: p.conn?.agentId }),
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
    const draining = msg.outcome === 'agent_error' && msg.directoryCode === SHUTTING_DOWN;
    if (draining) this.#draining.add(conn);
    if (draining || TRY_ELSEWHERE.has(msg.outcome)) {
      const next = this.#pick(p.req, p.tried);
      if (typeof next !== 'string') {
        this.#log.warn(
          { agentId: conn.agentId, requestId: msg.id, outcome: msg.outcome },
          'agent could not open; retrying',
        );
        this.#sendTo(p, next);
        return;
      }
    }
    this.#finish(p, {
      outcome: msg.outcome,
      agentId: conn.agentId,
      server: msg.server,
      directoryCode: msg.directoryCode,
      agentMs: msg.agentMs,
      directoryMs: msg.directoryMs,
    });
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
      if (tried?.has(c) || !c.usable(cutoff) || this.#draining.has(c)) continue;
      if (req.envelopes && !Object.hasOwn(req.envelopes, c.agentId)) continue;
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
        this.#finish(p, { outcome: c });
        return;
      }
      p.tried.add(c);
      const { req } = p;
      try {
        const sealed = this.#envelopeFor(p, c);
        p.conn = c;
        c.pending.set(req.requestId, p);
        // false: the socket is closing (the agent hung up); fail over now, not at its close event.
        const sent = c.sendRaw(
          JSON.stringify({
            type: 'validate',
            id: req.requestId,
            tenantId: req.tenantId,
            user: req.user,
            enc: sealed.enc,
            ct: sealed.ct,
            deadline: req.deadline,
            sentAt: this.#now(),
          }),
        );
        if (!sent) throw new Error('the agent connection is closing');
        return;
      } catch (err) {
        c.pending.delete(req.requestId);
        this.#log.warn({ err, agentId: c.agentId, requestId: req.requestId }, 'could not send to agent');
        c = this.#pick(req, p.tried);
      }
    }
  }

  #envelopeFor(p: Pending, c: AgentConnection): SealedEnvelope {
    const { req } = p;
    const given = req.envelopes?.[c.agentId];
    if (given) return given;
    if (!p.password) throw new Error('no envelope for this agent');
    const sealed = hpkeSeal(
      c.hpkeKey,
      p.password,
      aad(req.tenantId, req.requestId, req.user.upn, req.deadline),
    );
    return {
      enc: Buffer.from(sealed.enc).toString('base64url'),
      ct: Buffer.from(sealed.ct).toString('base64url'),
    };
  }

  #finish(p: Pending, answer: ValidationAnswer): void {
    if (p.done) return;
    p.done = true;
    this.#inFlight--;
    clearTimeout(p.timer);
    if (p.conn?.pending.get(p.req.requestId) === p) p.conn.pending.delete(p.req.requestId);
    // The cleartext copy is ours; wipe it rather than leave it for the garbage collector.
    p.password?.fill(0);
    p.resolve(answer);
  }

  /** Fails every request still waiting (shutdown). */
  closeAll(): void {
    for (const t of this.#tenants.values()) {
      for (const c of t.conns) {
        for (const p of c.pending.values()) this.#finish(p, { outcome: 'no_agent', agentId: c.agentId });
        c.pending.clear();
      }
    }
    this.#tenants.clear();
  }
}
