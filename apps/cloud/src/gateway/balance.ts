/**
 * Rebalancing agents over the scale-out shape's nodes. Agents reconnect to whichever node answers
 * first after a node dies, and nothing moved them back: the survivors kept them, and a restarted
 * node stayed empty. Now every serving node announces on NATS, every `everyMs`, how many agent
 * connections it holds (NodeLoad); a node holding more than its share (the cluster's total over the
 * nodes announcing, plus a small slack) asks some of its agents to reconnect elsewhere (a
 * `reconnect` frame, through the gateway's `shed`). The agent opens its new connection before it
 * closes the old one, so no tenant loses its connected agent to a move.
 *
 * Gradual: at most `maxMovesPerS` agents per second per node, each agent with a random delay within
 * the step, so the receiving node takes the handshakes spread out (a move costs it a mutual-TLS
 * handshake, a hello and a row write, the same as the reconnect storm after a node's death).
 * Agents asked to move count as still here in the total until they are gone, so that a move under
 * way is not answered with more moves.
 */
import { NodeLoad } from '@gatehouse/protocol';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';

export const LOAD_SUBJECT = 'gatehouse.nodes.load';
/** How often nodes announce their load and look at the others'. */
export const DEFAULT_BALANCE_MS = 2_000;
/** Agents one node asks to move per second, at most. */
export const DEFAULT_MAX_MOVES_PER_S = 100;
/** Above its share by this fraction, a node sheds (the share itself is rounded up). */
const SLACK = 0.05;
/** A node not heard from for this many intervals is counted out. */
const STALE_STEPS = 3;

/** The gateway's side: its connections and the frame that moves one. */
export interface LocalAgents {
  /** Ready connections here, and how many of them were asked to move and are still here. */
  count(): { held: number; moving: number };
  /** Asks up to `n` agents to move, each after a random part of `jitterMs`. Returns how many. */
  shed(n: number, jitterMs: number): number;
}

export interface BalancerOptions {
  nodeId: string;
  log: Logger;
  local: LocalAgents;
  everyMs?: number;
  maxMovesPerS?: number;
}

export interface Balancer {
  /** The node stops serving: it tells the others to count it out, and moves nothing more. */
  leave(): void;
}

/** How many of its agents a node holding `held` (+ `moving`) should ask to move now. */
export const movesFor = (
  held: number,
  moving: number,
  peers: readonly number[],
  maxMoves: number,
): number => {
  if (peers.length === 0) return 0;
  const total = held + moving + peers.reduce((s, n) => s + n, 0);
  const share = Math.ceil(total / (peers.length + 1));
  if (held <= share + Math.floor(share * SLACK)) return 0;
  return Math.min(held - share, maxMoves);
};

export const startBalancer = (nc: NatsConnection, o: BalancerOptions): Balancer => {
  const everyMs = o.everyMs ?? DEFAULT_BALANCE_MS;
  const maxMoves = Math.max(1, Math.ceil(((o.maxMovesPerS ?? DEFAULT_MAX_MOVES_PER_S) * everyMs) / 1000));
  const log = o.log.child({ part: 'balance' });
  const peers = new Map<string, { agents: number; at: number }>();
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let serving = true;

  const sub = nc.subscribe(LOAD_SUBJECT, {
    callback: (err, msg) => {
      if (err) return log.warn({ err: err.message }, 'load subscription error');
      let raw: unknown;
      try {
        raw = JSON.parse(dec.decode(msg.data));
      } catch {
        return;
      }
      const m = NodeLoad.safeParse(raw);
      if (!m.success || m.data.node === o.nodeId) return;
      if (m.data.leaving) peers.delete(m.data.node);
      else peers.set(m.data.node, { agents: m.data.agents, at: Date.now() });
    },
  });

  const announce = (leaving = false) => {
    const { held, moving } = o.local.count();
    const load: NodeLoad = { node: o.nodeId, agents: held + moving, ...(leaving ? { leaving } : {}) };
    nc.publish(LOAD_SUBJECT, enc.encode(JSON.stringify(load)));
  };

  const step = () => {
    if (!serving || nc.isClosed()) return;
    announce();
    const now = Date.now();
    for (const [node, p] of peers) if (now - p.at > STALE_STEPS * everyMs) peers.delete(node);
    const { held, moving } = o.local.count();
    const n = movesFor(
      held,
      moving,
      [...peers.values()].map((p) => p.agents),
      maxMoves,
    );
    if (n === 0) return;
    const asked = o.local.shed(n, everyMs);
    if (asked > 0) log.info({ held, moving, peers: peers.size, asked }, 'asking agents to move to another node');
  };

  // At once: a node that (re)joins is counted by the others at their next step.
  announce();
  const timer = setInterval(() => {
    try {
      step();
    } catch (err) {
      log.warn({ err }, 'rebalancing step failed');
    }
  }, everyMs);
  timer.unref();

  return {
    leave() {
      if (!serving) return;
      serving = false;
      clearInterval(timer);
      try {
        if (!nc.isClosed()) announce(true);
      } catch {
        // Leaving anyway: the others count this node out after STALE_STEPS intervals.
      }
      sub.unsubscribe();
    },
  };
};
