/**
 * The hot path of a sign-in: pick one of the tenant's connected agents (least outstanding, ties
 * round robin), seal the password to its HPKE key, send it, and wait for its answer or the
 * deadline. Unlike Entra, a request whose agent drops mid-flight is re-sealed and re-sent to
 * another agent within the same deadline. Never throws: every failure is an outcome.
 */
import { aad, hpkeSeal, type ValidateResult } from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { Dispatcher, ValidationAnswer, ValidationRequest } from '../context.ts';
import type { AgentConnection, Pending } from './connection.ts';

/** Requests one agent may hold at once before the dispatcher looks elsewhere. */
export const DEFAULT_MAX_IN_FLIGHT = 256;

/** Outcomes that say "this agent could not open the envelope": another agent may well succeed. */
const TRY_ELSEWHERE = new Set<string>(['agent_decrypt_failed', 'agent_no_key']);

interface TenantAgents {
  conns: AgentConnection[];
  rr: number;
}

export interface DispatcherOptions {
  log: Logger;
  now: () => number;
  inactiveAfterMs: number;
  maxInFlight?: number;
}

const encoder = new TextEncoder();

export class AgentDispatcher implements Dispatcher {
  readonly #tenants = new Map<string, TenantAgents>();
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #inactiveAfterMs: number;
  readonly #maxInFlight: number;

  constructor(opts: DispatcherOptions) {
    this.#log = opts.log;
    this.#now = opts.now;
    this.#inactiveAfterMs = opts.inactiveAfterMs;
    this.#maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  }

  /** A connection that said hello joins its tenant's pool. */
  add(conn: AgentConnection): void {
    let t = this.#tenants.get(conn.tenantId);
    if (!t) {
      t = { conns: [], rr: 0 };
      this.#tenants.set(conn.tenantId, t);
    }
    if (!t.conns.includes(conn)) t.conns.push(conn);
  }

  /** A closed connection leaves the pool; its in-flight requests go to another agent. */
  remove(conn: AgentConnection): void {
    const t = this.#tenants.get(conn.tenantId);
    if (t) {
      t.conns = t.conns.filter((c) => c !== conn);
      if (t.conns.length === 0) this.#tenants.delete(conn.tenantId);
    }
    const inFlight = [...conn.pending.values()];
    conn.pending.clear();
    for (const p of inFlight) {
      if (p.done) continue;
      this.#log.info(
        { agentId: conn.agentId, requestId: p.req.requestId },
        'agent dropped mid-request; failing over',
      );
      this.#sendTo(p, this.#pick(p.req.tenantId, p.tried));
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
      const first = this.#pick(req.tenantId, null);
      if (typeof first === 'string') return Promise.resolve({ outcome: first });
      return new Promise<ValidationAnswer>((resolve) => {
        const p: Pending = {
          req,
          password: encoder.encode(req.password),
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
    if (TRY_ELSEWHERE.has(msg.outcome)) {
      const next = this.#pick(p.req.tenantId, p.tried);
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
    tenantId: string,
    tried: Set<AgentConnection> | null,
  ): AgentConnection | 'no_agent' | 'agent_overloaded' {
    const t = this.#tenants.get(tenantId);
    if (!t) return 'no_agent';
    const n = t.conns.length;
    const start = t.rr++ % n;
    const cutoff = this.#now() - this.#inactiveAfterMs;
    let best: AgentConnection | null = null;
    let full = false;
    for (let i = 0; i < n; i++) {
      const c = t.conns[(start + i) % n]!;
      if (tried?.has(c) || !c.usable(cutoff)) continue;
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
        const sealed = hpkeSeal(
          c.hpkeKey,
          p.password,
          aad(req.tenantId, req.requestId, req.user.upn, req.deadline),
        );
        p.conn = c;
        c.pending.set(req.requestId, p);
        c.sendRaw(
          JSON.stringify({
            type: 'validate',
            id: req.requestId,
            tenantId: req.tenantId,
            user: req.user,
            enc: Buffer.from(sealed.enc).toString('base64url'),
            ct: Buffer.from(sealed.ct).toString('base64url'),
            deadline: req.deadline,
            sentAt: this.#now(),
          }),
        );
        return;
      } catch (err) {
        c.pending.delete(req.requestId);
        this.#log.warn({ err, agentId: c.agentId, requestId: req.requestId }, 'could not send to agent');
        c = this.#pick(req.tenantId, p.tried);
      }
    }
  }

  #finish(p: Pending, answer: ValidationAnswer): void {
    if (p.done) return;
    p.done = true;
    clearTimeout(p.timer);
    if (p.conn?.pending.get(p.req.requestId) === p) p.conn.pending.delete(p.req.requestId);
    // The cleartext copy is ours; wipe it rather than leave it for the garbage collector.
    p.password.fill(0);
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
