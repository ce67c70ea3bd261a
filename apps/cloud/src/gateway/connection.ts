/**
 * One agent's WebSocket after the mutual-TLS upgrade: hello and welcome, heartbeats, results and
 * sync pages. Every frame is parsed with the protocol schemas; a misbehaving agent is answered
 * with protocol_error and, after a few in a row, disconnected, without touching anyone else.
 */
import {
  AgentMessage,
  type CloudMessage,
  type DirectoryHealth,
  PROTOCOL_VERSION,
  parseFrame,
  type SyncPage,
  type ValidateResult,
} from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { ValidationAnswer, ValidationRequest } from '../context.ts';

/** How long an agent has to say hello after the upgrade. */
export const HELLO_TIMEOUT_MS = 5_000;
/** Malformed frames in a row before the connection is closed. */
export const MAX_MALFORMED = 3;
/** Clock skew beyond this is logged: HPKE deadlines and certificates depend on sane clocks. */
export const SKEW_WARN_MS = 60_000;

/** A validation request in flight (owned by the dispatcher, parked on the connection it was sent to). */
export interface Pending {
  req: ValidationRequest;
  /** Cleartext to seal per agent, or null when the request came pre-sealed (req.envelopes). */
  password: Uint8Array | null;
  tried: Set<AgentConnection>;
  conn: AgentConnection | null;
  timer: ReturnType<typeof setTimeout> | undefined;
  done: boolean;
  resolve: (a: ValidationAnswer) => void;
}

/** What the connection needs from the rest of the gateway. */
export interface ConnectionHooks {
  /** After a valid hello, before the welcome (presence in the database). */
  onHello(conn: AgentConnection): Promise<void>;
  /** After the welcome: the connection may now receive requests. */
  onReady(conn: AgentConnection): void;
  onClosed(conn: AgentConnection): void;
  onResult(conn: AgentConnection, msg: ValidateResult): void;
  onHeartbeat(conn: AgentConnection): Promise<void>;
  onSyncPage(conn: AgentConnection, msg: SyncPage): Promise<void>;
}

export interface AgentPeer {
  agentId: string;
  tenantId: string;
  serial: string;
  /** Raw X25519 public key recorded for the agent when this connection was authenticated. */
  hpkeKey: Uint8Array;
  externalIp: string | null;
}

export interface ConnectionInfo {
  agentId: string;
  tenantId: string;
  ready: boolean;
  hostname: string | null;
  version: string | null;
  outstanding: number;
  clockSkewMs: number | null;
  lastHeardAt: number;
  directory: DirectoryHealth | null;
  malformed: number;
}

export class AgentConnection {
  readonly agentId: string;
  readonly tenantId: string;
  readonly serial: string;
  readonly hpkeKey: Uint8Array;
  readonly externalIp: string | null;
  readonly pending = new Map<string, Pending>();
  ready = false;
  closed = false;
  hostname: string | null = null;
  version: string | null = null;
  capabilities: string[] = [];
  clockSkewMs: number | null = null;
  directory: DirectoryHealth | null = null;
  lastHeardAt: number;
  malformed = 0;
  /** Sync pages are applied one after another, in order; results never wait behind them. */
  syncChain: Promise<void> = Promise.resolve();
  readonly #ws: WebSocket;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #hooks: ConnectionHooks;
  readonly #heartbeatMs: number;
  #helloTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeatBusy = false;
  #helloSeen = false;

  constructor(
    ws: WebSocket,
    peer: AgentPeer,
    opts: { log: Logger; now: () => number; hooks: ConnectionHooks; heartbeatMs: number },
  ) {
    this.#ws = ws;
    this.agentId = peer.agentId;
    this.tenantId = peer.tenantId;
    this.serial = peer.serial;
    this.hpkeKey = peer.hpkeKey;
    this.externalIp = peer.externalIp;
    this.#log = opts.log.child({ agentId: peer.agentId, tenantId: peer.tenantId });
    this.#now = opts.now;
    this.#hooks = opts.hooks;
    this.#heartbeatMs = opts.heartbeatMs;
    this.lastHeardAt = opts.now();
    this.#helloTimer = setTimeout(() => this.close(1008, 'no hello'), HELLO_TIMEOUT_MS);
    ws.on('message', (data, isBinary) => this.#onFrame(isBinary ? null : data.toString()));
    // Oversized frames make ws close with 1009 and report here; nothing else to do but log.
    ws.on('error', (err) => this.#log.warn({ err: err.message }, 'agent socket error'));
    ws.on('close', (code) => this.#onClose(code));
  }

  /** Ready, open, and heard from since `cutoff`: may receive requests. */
  usable(cutoff: number): boolean {
    return this.ready && !this.closed && this.lastHeardAt >= cutoff;
  }

  send(msg: CloudMessage): void {
    this.sendRaw(JSON.stringify(msg));
  }

  sendRaw(frame: string): void {
    if (this.closed || this.#ws.readyState !== this.#ws.OPEN) throw new Error('connection closed');
    this.#ws.send(frame);
  }

  sendError(code: string, message: string): void {
    if (!this.closed) this.send({ type: 'error', code, message: message.slice(0, 512) });
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.#log.info({ code, reason }, 'closing agent connection');
    this.#ws.close(code, reason);
    // A peer that does not complete the closing handshake must not keep its slot.
    setTimeout(() => this.#ws.terminate(), 2_000).unref();
    this.#markClosed();
  }

  /** Drops the socket without a closing handshake (silent agents). */
  terminate(): void {
    this.#ws.terminate();
    this.#markClosed();
  }

  info(): ConnectionInfo {
    return {
      agentId: this.agentId,
      tenantId: this.tenantId,
      ready: this.ready,
      hostname: this.hostname,
      version: this.version,
      outstanding: this.pending.size,
      clockSkewMs: this.clockSkewMs,
      lastHeardAt: this.lastHeardAt,
      directory: this.directory,
      malformed: this.malformed,
    };
  }

  #markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#helloTimer);
    this.#hooks.onClosed(this);
  }

  #onClose(code: number): void {
    if (!this.closed) this.#log.info({ code }, 'agent disconnected');
    this.#markClosed();
  }

  #malformed(why: string): void {
    this.malformed++;
    this.#log.warn({ malformed: this.malformed, why }, 'protocol_error from agent');
    this.sendError('protocol_error', why);
    if (this.malformed >= MAX_MALFORMED) this.close(1002, 'too many malformed frames');
  }

  #onFrame(raw: string | null): void {
    if (this.closed) return;
    const msg = raw === null ? null : parseFrame(AgentMessage, raw);
    if (msg === null) {
      this.#malformed('the frame is not a valid agent message');
      return;
    }
    if (!this.#helloSeen && msg.type !== 'hello') {
      this.#malformed('expected hello first');
      return;
    }
    this.malformed = 0;
    this.lastHeardAt = this.#now();
    switch (msg.type) {
      case 'hello':
        this.#onHello(msg);
        return;
      case 'result':
        this.#hooks.onResult(this, msg);
        return;
      case 'heartbeat':
        this.directory = msg.directory;
        if (this.#heartbeatBusy) return;
        this.#heartbeatBusy = true;
        this.#hooks
          .onHeartbeat(this)
          .catch((err) => this.#log.error({ err }, 'heartbeat handling failed'))
          .finally(() => {
            this.#heartbeatBusy = false;
          });
        return;
      case 'sync.page':
        this.syncChain = this.syncChain
          .then(() => (this.closed ? undefined : this.#hooks.onSyncPage(this, msg)))
          .catch((err) => {
            this.#log.error({ err, runId: msg.runId }, 'sync page failed');
            this.sendError('internal_error', 'the sync page could not be applied');
          });
        return;
    }
  }

  #onHello(msg: Extract<AgentMessage, { type: 'hello' }>): void {
    if (this.#helloSeen) {
      this.#malformed('duplicate hello');
      return;
    }
    this.#helloSeen = true;
    clearTimeout(this.#helloTimer);
    if (msg.protocol !== PROTOCOL_VERSION) {
      this.#log.warn({ protocol: msg.protocol }, 'agent protocol not supported');
      this.sendError(
        'protocol_error',
        `protocol ${msg.protocol} is not supported; this cloud speaks ${PROTOCOL_VERSION}`,
      );
      this.close(1002, 'protocol version');
      return;
    }
    const now = this.#now();
    this.clockSkewMs = msg.clock - now;
    if (Math.abs(this.clockSkewMs) > SKEW_WARN_MS)
      this.#log.warn({ clockSkewMs: this.clockSkewMs }, 'agent clock skew');
    this.hostname = msg.hostname;
    this.version = msg.version;
    this.capabilities = msg.capabilities;
    this.directory = msg.directory;
    this.#hooks
      .onHello(this)
      .then(() => {
        if (this.closed) return;
        this.send({
          type: 'welcome',
          agentId: this.agentId,
          tenantId: this.tenantId,
          heartbeatMs: this.#heartbeatMs,
          serverClock: this.#now(),
        });
        this.ready = true;
        this.#hooks.onReady(this);
        this.#log.info(
          { hostname: msg.hostname, version: msg.version, clockSkewMs: this.clockSkewMs },
          'agent connected',
        );
      })
      .catch((err) => {
        this.#log.error({ err }, 'agent hello failed');
        this.sendError('internal_error', 'the cloud could not accept the connection');
        this.close(1011, 'internal error');
      });
  }
}
