/**
 * The supervisor: one connection at a time, the next gateway and a backoff step after each, until
 * the signal aborts or the cloud refuses the agent for good. Certificate renewal runs beside the
 * connections; a new certificate means a new connection.
 */
import { X509Certificate } from 'node:crypto';
import type { Reconnect } from '@gatehouse/protocol';
import { Backoff } from '../backoff.ts';
import { renewCertificate } from '../renew.ts';
import { loadAgentState } from '../state.ts';
import { Connection } from './connection.ts';
import type { Refusal } from './refusal.ts';
import type { AgentRuntime } from './runtime.ts';
import { SyncRunner } from './sync-runner.ts';

/** How long a stopping agent waits for the requests it holds. */
export const DRAIN_TIMEOUT_MS = 15_000;

/** When to renew: at two thirds of the certificate's lifetime. */
export const renewAt = (certPem: string): number => {
  const c = new X509Certificate(certPem);
  const from = Date.parse(c.validFrom);
  const to = Date.parse(c.validTo);
  return from + ((to - from) * 2) / 3;
};

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

export type RunOutcome = { kind: 'stopped' } | { kind: 'refused'; refusal: Refusal };

export class Supervisor {
  readonly #rt: AgentRuntime;
  readonly #signal: AbortSignal;
  readonly #backoff: Backoff;
  readonly #sync: SyncRunner;
  #current: Connection | undefined;
  /** The connection a move opened, until it is welcomed (then it is #current) or fails. */
  #successor: Connection | undefined;
  #moveTimer: NodeJS.Timeout | undefined;
  #gatewayIndex = 0;
  #renewTimer: NodeJS.Timeout | undefined;

  constructor(rt: AgentRuntime, signal: AbortSignal, backoff = new Backoff()) {
    this.#rt = rt;
    this.#signal = signal;
    this.#backoff = backoff;
    this.#sync = new SyncRunner(rt);
  }

  async run(): Promise<RunOutcome> {
    const { log } = this.#rt;
    this.#scheduleRenewal();
    const stopping = this.#signal.aborted
      ? Promise.resolve()
      : new Promise<void>((r) => this.#signal.addEventListener('abort', () => r(), { once: true }));
    const drained = stopping.then(() => this.#drain());
    try {
      while (!this.#signal.aborted) {
        const { refusal } = await this.#connectOnce();
        if (refusal) {
          log.fatal(
            { code: refusal.code, detail: refusal.detail },
            'the cloud refused this agent; not retrying',
          );
          return { kind: 'refused', refusal };
        }
        this.#backoff.disconnected();
        if (this.#signal.aborted) break;
        const delay = this.#backoff.next();
        log.info({ delayMs: delay, attempt: this.#backoff.attempt }, 'reconnecting');
        await sleep(delay, this.#signal);
      }
      await drained;
      return { kind: 'stopped' };
    } finally {
      clearTimeout(this.#renewTimer);
      clearTimeout(this.#moveTimer);
    }
  }

  /** The gateway from registration first, then the configured ones. Each failed or lost
   * connection moves on to the next, so a dead cloud node costs one backoff step, not many. */
  #nextGateway(): string {
    const { state, config } = this.#rt;
    const all = [...new Set([state.gatewayUrl, ...(config.gatewayUrls ?? [])])];
    return all[this.#gatewayIndex++ % all.length]!;
  }

  #open(onWelcome: (conn: Connection) => void): Connection {
    const conn: Connection = new Connection({
      rt: this.#rt,
      sync: this.#sync,
      gateway: this.#nextGateway(),
      onWelcome: () => onWelcome(conn),
      onMoveAsked: (c, msg) => this.#moveAsked(c, msg),
    });
    return conn;
  }

  /** One session: a connection, and the ones that took over from it by moves, until the last ends. */
  async #connectOnce() {
    let conn = this.#open(() => this.#backoff.connected());
    this.#current = conn;
    for (;;) {
      const end = await conn.ended;
      if (end.refusal || this.#signal.aborted) {
        this.#successor?.close(1001, 'agent shutting down');
        this.#successor = undefined;
        if (this.#current === conn) this.#current = undefined;
        return end;
      }
      // A move's connection took over (welcomed): this one drained and closed; follow that one.
      if (this.#current && this.#current !== conn) {
        conn = this.#current;
        continue;
      }
      // Dropped while a move's connection is opening: that one carries on, with no backoff step.
      if (this.#successor) {
        conn = this.#successor;
        this.#successor = undefined;
        this.#current = conn;
        continue;
      }
      this.#current = undefined;
      return end;
    }
  }

  /**
   * The cloud asked us to move (its node holds more than its share): after a random part of the
   * jitter, a new connection to the next gateway; once it is welcomed, the old one drains and
   * closes. The tenant keeps a connected agent throughout; a failed new connection changes nothing.
   */
  #moveAsked(from: Connection, msg: Reconnect): void {
    if (this.#successor || this.#moveTimer || from !== this.#current) return;
    const delay = Math.floor(Math.random() * msg.jitterMs);
    this.#rt.log.info(
      { reason: msg.reason, delayMs: delay, from: from.gateway },
      'moving to another gateway',
    );
    this.#moveTimer = setTimeout(() => {
      this.#moveTimer = undefined;
      if (this.#signal.aborted || from !== this.#current || from.draining) return;
      const next = this.#open((c) => {
        this.#backoff.connected();
        this.#current = c;
        if (this.#successor === c) this.#successor = undefined;
        this.#rt.log.info({ gateway: c.gateway }, 'moved; handing over the old connection');
        void from.handOver();
      });
      this.#successor = next;
      void next.ended.then(() => {
        if (this.#successor !== next) return;
        this.#successor = undefined;
        if (!next.welcomed) this.#rt.log.warn({ gateway: next.gateway }, 'move failed; staying');
      });
    }, delay);
  }

  /** SIGTERM: nothing new from the cloud, the requests held answered (or the timeout), then close. */
  async #drain(): Promise<void> {
    const { log, inFlight } = this.#rt;
    const conn = this.#current;
    log.info({ inFlight: inFlight.count }, 'stopping: finishing in-flight requests');
    clearTimeout(this.#moveTimer);
    this.#successor?.close(1001, 'agent shutting down');
    conn?.drain();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => {
      timer = setTimeout(r, DRAIN_TIMEOUT_MS);
    });
    await Promise.race([inFlight.idle(), timeout]);
    clearTimeout(timer);
    conn?.close(1001, 'agent shutting down');
    if (conn) await conn.ended;
  }

  #scheduleRenewal(): void {
    clearTimeout(this.#renewTimer);
    const wait = Math.min(2 ** 31 - 1, Math.max(0, renewAt(this.#rt.state.certPem) - Date.now()));
    this.#renewTimer = setTimeout(() => void this.#renew(), wait);
    this.#renewTimer.unref();
  }

  async #renew(): Promise<void> {
    const rt = this.#rt;
    if (Date.now() < renewAt(rt.state.certPem)) return this.#scheduleRenewal();
    try {
      await renewCertificate(rt.config.stateDir, rt.state, rt.config.proxy);
      rt.previousHpke = rt.state.hpkePrivateKey;
      rt.state = loadAgentState(rt.config.stateDir);
      rt.log.info({ renewAt: new Date(renewAt(rt.state.certPem)).toISOString() }, 'certificate renewed');
      this.#backoff.reset();
      this.#current?.close(1000, 'certificate renewed');
    } catch (err) {
      rt.log.warn({ err: (err as Error).message }, 'certificate renewal failed; retrying in 10 minutes');
      this.#renewTimer = setTimeout(() => this.#scheduleRenewal(), 10 * 60_000);
      this.#renewTimer.unref();
      return;
    }
    this.#scheduleRenewal();
  }
}
