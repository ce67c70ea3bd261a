/**
 * Agent presence in the database. A node writes its agents' last_seen_at in one batch every
 * `presenceWriteMs` (one statement per thousand agents), not one UPDATE per heartbeat: at a
 * million agents and a heartbeat every 10 s, per-heartbeat writes alone were 100,000 commits a
 * second, more than the sign-ins. A connection's hello still writes at once (it must find its row,
 * and the agent is Active from that moment). The batch also rechecks the rows, as each heartbeat
 * did: an agent deleted by a process whose revoke did not reach this node is dropped at the next
 * write. What the database shows is therefore up to `presenceWriteMs` old (config.storedLiveness).
 */
import type { Logger } from 'pino';
import type { Db } from '../db/index.ts';
import { touchAgents } from '../store/agents.ts';
import type { AgentConnection } from './connection.ts';

export interface PresenceWriterOptions {
  db: Db;
  log: Logger;
  now: () => number;
  everyMs: number;
  inactiveAfterMs: number;
  connections: () => Iterable<AgentConnection>;
  /** A connection whose agent's row is gone or deleted. */
  onDeleted: (conn: AgentConnection) => void;
}

export interface PresenceWriter {
  /** Writes now (tests, and the interval). */
  flush(): Promise<void>;
  close(): void;
}

export const startPresenceWriter = (o: PresenceWriterOptions): PresenceWriter => {
  let running: Promise<void> | undefined;
  const write = async () => {
    const cutoff = o.now() - o.inactiveAfterMs;
    // Only agents heard from lately: a silent one is about to be dropped, not seen.
    const conns = [...o.connections()].filter((c) => c.usable(cutoff));
    if (conns.length === 0) return;
    const ids = [...new Set(conns.map((c) => c.agentId))];
    const live = await touchAgents(o.db, ids, o.now());
    for (const c of conns) if (!live.has(c.agentId) && !c.closed) o.onDeleted(c);
  };
  const flush = () => {
    // One write at a time: a slow database must not pile up batches.
    running ??= write()
      .catch((err: unknown) => o.log.warn({ err }, 'presence write failed; retried at the next interval'))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void flush(), o.everyMs);
  timer.unref();
  return { flush, close: () => clearInterval(timer) };
};
