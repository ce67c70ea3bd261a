/**
 * One agent's WebSocket after the mutual-TLS upgrade: hello and welcome, heartbeats, results and
 * sync pages. Every frame is parsed with the protocol schemas; a misbehaving agent is answered
 * with protocol_error and, after a few in a row, disconnected, without touching anyone else.
 *
 * Nothing that happens on one connection may reach the process: an agent can close its socket at
 * any moment, so a send to a closing socket is a logged no-op (false), and every hook call runs
 * through #contain, which turns a throw or a rejection into, at most, this connection closing
 * with a catalog error. A throw that escaped here once took every tenant's sign-ins down.
 */
import {
  AgentMessage,
  type CloudMessage,
  type DirectoryHealth,
  type ErrorCode,
  PROTOCOL_VERSION,
  parseFrame,
  type SyncPage,
  type ValidateResult,
} from '@gatehouse/protocol';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { z } from 'zod';
import { agentChannelErrors, agentFrames, agentMalformed, agentSessions } from '../metrics/families.ts';
import type { ValidationAnswer, ValidationRequest } from '../signin/types.ts';
import { SyncPages } from './sync-pages.ts';

export { MAX_QUEUED_SYNC_PAGES } from './sync-pages.ts';

/** How long an agent has to say hello after the upgrade. */
export const HELLO_TIMEOUT_MS = 5_000;
/** Malformed frames in a row before the connection is closed. */
export const MAX_MALFORMED = 3;
/** Clock skew beyond this is logged: HPKE deadlines and certificates depend on sane clocks. */
export const SKEW_WARN_MS = 60_000;
/** Bytes queued to a socket that does not read them; beyond this the agent is dropped. */
export const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

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
  draining: boolean;
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
  /** The agent said it is stopping (a draining frame): it gets nothing new on this connection. */
  draining = false;
  /** When this node asked the agent to move to another node (rebalancing), or null. */
  movingSince: number | null = null;
  hostname: string | null = null;
  version: string | null = null;
  capabilities: string[] = [];
  clockSkewMs: number | null = null;
  directory: DirectoryHealth | null = null;
  lastHeardAt: number;
  malformed = 0;
  readonly #sync: SyncPages;
  readonly #ws: WebSocket;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #hooks: ConnectionHooks;
  readonly #heartbeatMs: number;
  #helloTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeatBusy = false;
  #helloSeen = false;
  /** Frames not sent because the socket was already closing (logged once, counted at close). */
  #dropped = 0;

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
    this.#sync = new SyncPages(this.#log);
    this.#now = opts.now;
    this.#hooks = opts.hooks;
    this.#heartbeatMs = opts.heartbeatMs;
    this.lastHeardAt = opts.now();
    this.#helloTimer = setTimeout(
      () => this.#contain('hello timer', () => this.close(1008, 'no hello')),
      HELLO_TIMEOUT_MS,
    );
    ws.on('message', (data, isBinary) =>
      this.#contain('frame', () => this.#onFrame(isBinary ? null : data.toString())),
    );
    // Oversized frames make ws close with 1009 and report here; nothing else to do but log.
    ws.on('error', (err) => {
      agentChannelErrors.inc({ kind: 'socket' });
      this.#log.warn({ err: err.message }, 'agent socket error');
    });
    ws.on('close', (code) => this.#contain('close', () => this.#onClose(code)));
  }

  /** Ready, open, and heard from since `cutoff`: may receive requests. */
  usable(cutoff: number): boolean {
    return this.ready && !this.closed && this.lastHeardAt >= cutoff;
  }

  /** Whether a frame can be sent now: not closed by us, and the socket still OPEN (not CLOSING). */
  get open(): boolean {
    return !this.closed && this.#ws.readyState === this.#ws.OPEN;
  }

  /**
   * Sends one message; false when the socket is closing or closed (logged, never thrown). Every
   * frame to the agent goes through here, the dispatcher's validate frames too. The parameter is
   * the schema's input side: ids held as plain strings need no brand to be sent; the agent parses.
   */
  send(msg: z.input<typeof CloudMessage>): boolean {
    return this.#sendFrame(JSON.stringify(msg), msg.type);
  }

  /**
   * Sends one frame. Returns false, and logs, when the connection is closing or closed: the agent
   * may hang up between any two awaits, so callers that can do something else (the dispatcher
   * fails over) look at the answer, and the rest need not care.
   */
  #sendFrame(frame: string, type: CloudMessage['type']): boolean {
    if (this.open && this.#ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      agentChannelErrors.inc({ kind: 'slow_reader' });
      this.#log.warn({ buffered: this.#ws.bufferedAmount }, 'agent does not read its socket; dropping it');
      // Not from here: the caller (the dispatcher) is in the middle of parking a request on us.
      setImmediate(() => this.#contain('drop slow reader', () => this.terminate()));
      return false;
    }
    if (this.open) {
      try {
        this.#ws.send(frame);
        agentFrames.inc({ direction: 'out', type });
        return true;
      } catch (err) {
        agentChannelErrors.inc({ kind: 'send' });
        this.#log.warn({ err }, 'frame not sent');
        return false;
      }
    }
    if (this.#dropped++ === 0)
      this.#log.debug({ readyState: this.#ws.readyState }, 'frame not sent: the connection is closing');
    return false;
  }

  sendError(code: ErrorCode, message: string): boolean {
    return this.send({ type: 'error', code, message: message.slice(0, 512) });
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.#log.info({ code, reason }, 'closing agent connection');
    try {
      this.#ws.close(code, reason);
      // A peer that does not complete the closing handshake must not keep its slot.
      setTimeout(() => this.#ws.terminate(), 2_000).unref();
    } catch (err) {
      this.#log.warn({ err }, 'closing handshake failed; dropping the socket');
      this.#ws.terminate();
    }
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
      draining: this.draining,
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
    agentSessions.inc({ event: 'closed' });
    clearTimeout(this.#helloTimer);
    // Already closed, so a failure here can only be logged; the connection is gone either way.
    this.#contain('closed', () => this.#hooks.onClosed(this));
  }

  #onClose(code: number): void {
    if (!this.closed) this.#log.info({ code, droppedFrames: this.#dropped }, 'agent disconnected');
    this.#markClosed();
  }

  /**
   * Runs one handler of this connection's events. A throw or a rejection is logged with what was
   * running and closes this connection with internal_error (1011); it never reaches the process.
   */
  #contain(what: string, fn: () => void | Promise<void>): void {
    try {
      const r = fn();
      if (r) r.catch((err: unknown) => this.#failed(what, err));
    } catch (err) {
      this.#failed(what, err);
    }
  }

  #failed(what: string, err: unknown): void {
    try {
      agentChannelErrors.inc({ kind: 'handler' });
      this.#log.error({ err, what }, 'agent connection handler failed; closing the connection');
      if (this.closed) return;
      this.sendError('internal_error', 'the cloud could not handle the message');
      this.close(1011, 'internal error');
    } catch {
      // Last resort (even logging failed): drop the socket; never rethrow into the event loop.
      this.#ws.terminate();
    }
  }

  #malformed(why: string): void {
    this.malformed++;
    agentMalformed.inc();
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
    agentFrames.inc({ direction: 'in', type: msg.type });
    this.lastHeardAt = this.#now();
    switch (msg.type) {
      case 'hello':
        this.#onHello(msg);
        return;
      case 'result':
        this.#hooks.onResult(this, msg);
        return;
      case 'draining':
        if (!this.draining) this.#log.info({ outstanding: this.pending.size }, 'agent draining');
        this.draining = true;
        return;
      case 'heartbeat':
        this.directory = msg.directory;
        if (this.#heartbeatBusy) return;
        this.#heartbeatBusy = true;
        // A failed presence write (the database busy) is logged; the agent stays connected.
        Promise.resolve()
          .then(() => this.#hooks.onHeartbeat(this))
          .catch((err: unknown) => this.#log.error({ err }, 'heartbeat handling failed'))
          .finally(() => {
            this.#heartbeatBusy = false;
          });
        return;
      case 'sync.page': {
        const queued = this.#sync.push(
          msg,
          () => (this.closed ? undefined : this.#hooks.onSyncPage(this, msg)),
          () => this.sendError('internal_error', 'the sync page could not be applied'),
        );
        if (queued) return;
        this.sendError('protocol_error', 'too many sync pages in flight; wait for each sync.ack');
        this.close(1008, 'sync pages not paced');
        return;
      }
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
    this.#contain('hello', () => this.#welcome(msg));
  }

  async #welcome(msg: Extract<AgentMessage, { type: 'hello' }>): Promise<void> {
    await this.#hooks.onHello(this);
    // An agent that hung up while its presence was written never becomes ready.
    const sent =
      !this.closed &&
      this.send({
        type: 'welcome',
        agentId: this.agentId,
        tenantId: this.tenantId,
        heartbeatMs: this.#heartbeatMs,
        serverClock: this.#now(),
      });
    if (!sent) return;
    this.ready = true;
    agentSessions.inc({ event: 'ready' });
    this.#hooks.onReady(this);
    this.#log.info(
      { hostname: msg.hostname, version: msg.version, clockSkewMs: this.clockSkewMs },
      'agent connected',
    );
  }
}
