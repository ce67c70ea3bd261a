/**
 * What the agent does with each kind of cloud message. One function per kind, over the session
 * (the connection) they arrived on; the table is typed so a new message kind fails to compile here.
 */
import type { AgentMessage, CloudMessage, Reconnect } from '@gatehouse/protocol';
import { handleValidate } from '../validate.ts';
import { type Refusal, refusalFromErrorFrame } from './refusal.ts';
import type { AgentRuntime } from './runtime.ts';
import type { SyncRunner } from './sync-runner.ts';

/** The connection, as the handlers see it. */
export interface Session {
  readonly rt: AgentRuntime;
  readonly sync: SyncRunner;
  readonly gateway: string;
  readonly welcomed: boolean;
  send(m: AgentMessage): boolean;
  /** Counts a request being answered on this connection (a move waits for them). */
  track<T>(work: Promise<T>): Promise<T>;
  /** The cloud asked this connection to move to another gateway node. */
  moveAsked(msg: Reconnect): void;
  /** The welcome arrived: start heartbeats and the sync schedule. */
  started(heartbeatMs: number): void;
  /** A permanent refusal: this connection ends and the supervisor stops. */
  refuse(r: Refusal): void;
  runSync(reason: string, runId?: string, mode?: 'full' | 'delta'): void;
}

type Handlers = { [K in CloudMessage['type']]: (s: Session, m: Extract<CloudMessage, { type: K }>) => void };

export const handlers: Handlers = {
  welcome(s, msg) {
    const { rt } = s;
    rt.connected = true;
    rt.heartbeatMs = msg.heartbeatMs;
    rt.log.info(
      {
        agentId: msg.agentId,
        tenantId: msg.tenantId,
        gateway: s.gateway,
        heartbeatMs: msg.heartbeatMs,
        skewMs: Date.now() - msg.serverClock,
      },
      'connected',
    );
    rt.writeStatus();
    s.started(msg.heartbeatMs);
  },

  // Answered even while draining: a request that crossed the draining frame is still served.
  validate(s, msg) {
    const { rt } = s;
    const work = handleValidate(msg, {
      directory: rt.directory,
      hpkePrivateKey: rt.state.hpkePrivateKey,
      previousHpkePrivateKey: rt.previousHpke,
      tenantId: rt.state.tenantId,
    });
    s.track(work)
      .then((r) => {
        s.send(r);
        rt.log.info(
          { id: msg.id, outcome: r.outcome, code: r.directoryCode, agentMs: r.agentMs },
          'validated',
        );
      })
      .catch((err: Error) => rt.log.error({ id: msg.id, err: err.message }, 'validation crashed'));
  },

  'sync.request'(s, msg) {
    s.runSync('requested', msg.runId, msg.mode);
  },

  'sync.ack'(s, msg) {
    s.sync.acked(msg.runId, msg.seq, msg.summary);
  },

  reconnect(s, msg) {
    s.moveAsked(msg);
  },

  error(s, msg) {
    const refusal = refusalFromErrorFrame(msg.code, msg.message, s.welcomed);
    if (refusal) return s.refuse(refusal);
    s.rt.log.warn({ code: msg.code, message: msg.message }, 'error from the cloud');
  },
};

/** Calls the handler of a parsed message (the table's types are per kind; the call is not). */
export const handle = (s: Session, msg: CloudMessage): void =>
  (handlers[msg.type] as (s: Session, m: CloudMessage) => void)(s, msg);
