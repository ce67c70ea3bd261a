/**
 * The supervisor: one connection at a time, the next gateway and a backoff step after each, until
 * the signal aborts or the cloud refuses the agent for good. Certificate renewal runs beside the
 * connections; a new certificate means a new connection.
 */
import { X509Certificate } from 'node:crypto';
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
    }
  }

  /** The gateway from registration first, then the configured ones. Each failed or lost
   * connection moves on to the next, so a dead cloud node costs one backoff step, not many. */
  #nextGateway(): string {
    const { state, config } = this.#rt;
    const all = [...new Set([state.gatewayUrl, ...(config.gatewayUrls ?? [])])];
    return all[this.#gatewayIndex++ % all.length]!;
  }

  #connectOnce() {
    const conn = new Connection({
      rt: this.#rt,
      sync: this.#sync,
      gateway: this.#nextGateway(),
      onWelcome: () => this.#backoff.connected(),
    });
    this.#current = conn;
    return conn.ended.finally(() => {
      if (this.#current === conn) this.#current = undefined;
    });
  }

  /** SIGTERM: nothing new from the cloud, the requests held answered (or the timeout), then close. */
  async #drain(): Promise<void> {
    const { log, inFlight } = this.#rt;
    const conn = this.#current;
    log.info({ inFlight: inFlight.count }, 'stopping: finishing in-flight requests');
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
