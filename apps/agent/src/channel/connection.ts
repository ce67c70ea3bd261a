/**
 * One WebSocket session with a gateway: mutual TLS (through the proxy when configured), hello,
 * heartbeats and the sync schedule, and the frames handed to the handlers. It never reconnects:
 * `ended` resolves when the socket closes, with the permanent refusal if the cloud made one.
 */
import { hostname } from 'node:os';
import {
  AGENT_CHANNEL_PATH,
  type AgentMessage,
  CloudMessage,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  parseFrame,
  type Reconnect,
} from '@gatehouse/protocol';
import WebSocket from 'ws';
import { agentFor, proxyFor } from '../https.ts';
import { VERSION } from '../version.ts';
import { handle, type Session } from './handlers.ts';
import { type Refusal, refusalFromUpgrade } from './refusal.ts';
import { type AgentRuntime, InFlight } from './runtime.ts';
import type { SyncRunner } from './sync-runner.ts';

/** Enough of a refused upgrade's body to read the catalog code. */
const MAX_REFUSAL_BODY = 4096;

export interface SessionEnd {
  refusal: Refusal | null;
}

/** How long a connection being moved away from waits for the requests it holds. */
export const MOVE_DRAIN_TIMEOUT_MS = 15_000;

export interface ConnectionOptions {
  rt: AgentRuntime;
  sync: SyncRunner;
  gateway: string;
  onWelcome: () => void;
  /** The cloud asked this connection to move elsewhere (a reconnect frame). */
  onMoveAsked?: (conn: Connection, msg: Reconnect) => void;
}

export class Connection implements Session {
  readonly rt: AgentRuntime;
  readonly sync: SyncRunner;
  readonly gateway: string;
  readonly ended: Promise<SessionEnd>;
  welcomed = false;
  draining = false;
  /** A newer connection took over (a move): this one's end says nothing about the agent's state. */
  superseded = false;
  /** Requests received on this connection and not answered yet (a move waits for them). */
  readonly inFlight = new InFlight();
  readonly #ws: WebSocket;
  readonly #onWelcome: () => void;
  readonly #onMoveAsked: ConnectionOptions['onMoveAsked'];
  #refusal: Refusal | null = null;
  #timers: NodeJS.Timeout[] = [];
  #lastSeen = Date.now();

  constructor(o: ConnectionOptions) {
    this.rt = o.rt;
    this.sync = o.sync;
    this.gateway = o.gateway;
    this.#onWelcome = o.onWelcome;
    this.#onMoveAsked = o.onMoveAsked;
    this.#ws = this.#open();
    this.ended = new Promise((resolve) =>
      this.#ws.on('close', (code, reason) => {
        for (const t of this.#timers) clearInterval(t);
        // A connection that never took over (a failed move) or was taken over says nothing.
        if (this.welcomed && !this.superseded) {
          if (this.rt.connected) this.rt.log.info({ code, reason: reason.toString() }, 'disconnected');
          this.rt.connected = false;
          this.rt.writeStatus();
        }
        resolve({ refusal: this.#refusal });
      }),
    );
  }

  send(m: AgentMessage): boolean {
    if (this.#ws.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(m));
    return true;
  }

  /** Tells the cloud to send nothing new here; what is in flight is still answered. */
  drain(): void {
    this.draining = true;
    this.send({ type: 'draining' });
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason);
  }

  /** A request of this connection being answered: counted here and in the runtime. */
  track<T>(work: Promise<T>): Promise<T> {
    return this.rt.inFlight.track(this.inFlight.track(work));
  }

  moveAsked(msg: Reconnect): void {
    if (!this.welcomed || this.draining || this.superseded) return;
    this.#onMoveAsked?.(this, msg);
  }

  /** A newer connection is welcomed: nothing new here, answer what this one holds, then close. */
  async handOver(): Promise<void> {
    this.superseded = true;
    this.drain();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => {
      timer = setTimeout(r, MOVE_DRAIN_TIMEOUT_MS);
    });
    await Promise.race([this.inFlight.idle(), timeout]);
    clearTimeout(timer);
    this.close(1000, 'moved to another gateway');
    await this.ended;
  }

  refuse(r: Refusal): void {
    this.#refusal ??= r;
    this.#ws.close(1000, 'refused');
  }

  runSync(reason: string, runId?: string, mode?: 'full' | 'delta'): void {
    if (!this.welcomed || this.draining) return;
    void this.sync.run(reason, (m) => this.send(m), runId, mode);
  }

  started(heartbeatMs: number): void {
    this.welcomed = true;
    this.#onWelcome();
    const { config } = this.rt;
    this.#timers.push(
      setInterval(() => void this.#heartbeat(heartbeatMs), heartbeatMs),
      setInterval(() => this.runSync('interval'), config.sync.intervalMinutes * 60_000),
      ...this.sync.deltaTimer(() => this.runSync('delta interval', undefined, 'delta')),
    );
    if (this.sync.due) this.runSync('start');
  }

  async #heartbeat(heartbeatMs: number): Promise<void> {
    const { rt } = this;
    if (Date.now() - this.#lastSeen > 3 * heartbeatMs) {
      rt.log.warn('gateway silent for 3 heartbeats; reconnecting');
      return this.#ws.terminate();
    }
    this.#ws.ping();
    await rt.directory.probe(Math.min(rt.config.directory.timeoutMs, heartbeatMs / 2));
    this.send({
      type: 'heartbeat',
      clock: Date.now(),
      directory: rt.directory.health,
      inFlight: rt.inFlight.count,
    });
    rt.lastHeartbeatAt = Date.now();
    rt.writeStatus();
  }

  #open(): WebSocket {
    const { state, config, log } = this.rt;
    const url = `${this.gateway.replace(/\/+$/, '')}${AGENT_CHANNEL_PATH}`;
    const tls = { ca: state.cloudCaPem, key: state.keyPem, cert: state.certPem };
    const proxied = proxyFor(url.replace(/^wss:/, 'https:'), config.proxy);
    const ws = new WebSocket(url, {
      ...tls,
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 15_000,
      perMessageDeflate: false,
      ...(proxied ? { agent: agentFor(url.replace(/^wss:/, 'https:'), tls, config.proxy) } : {}),
    });
    ws.on('open', () => this.#hello());
    ws.on('pong', () => {
      this.#lastSeen = Date.now();
    });
    ws.on('message', (data, isBinary) => {
      this.#lastSeen = Date.now();
      const msg = isBinary ? null : parseFrame(CloudMessage, data.toString());
      if (!msg) return log.warn('malformed frame from the cloud');
      handle(this, msg);
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < MAX_REFUSAL_BODY) body += c;
      });
      res.on('close', () => {
        log.warn({ status: res.statusCode }, 'gateway refused the connection');
        this.#refusal ??= refusalFromUpgrade(res.statusCode ?? 0, body);
        ws.terminate();
      });
    });
    // After a refused upgrade, ws reports the socket it was told to drop: not news.
    ws.on('error', (err) => {
      if (!this.#refusal) log.warn({ err: err.message }, 'gateway connection error');
    });
    return ws;
  }

  #hello(): void {
    const { config, directory } = this.rt;
    this.send({
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      version: VERSION,
      hostname: hostname(),
      capabilities: [
        'validate',
        'reconnect',
        'sync.full',
        'sync.delta',
        ...(config.directory.kind === 'openldap' ? ['ppolicy'] : []),
      ],
      directory: directory.health,
      clock: Date.now(),
    });
  }
}
