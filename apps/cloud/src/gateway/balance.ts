/**
 * Rebalancing agents over the scale-out shape's nodes. Agents reconnect to whichever node answers
 * first after a node dies, and nothing moved them back: the survivors kept them, and a restarted
 * node stayed empty. Now every serving node announces on NATS, every `everyMs`, how many agent
 * connections it holds (NodeLoad); a node holding more than its share (the cluster's total over the
 * nodes announcing, plus a small slack) asks some of its agents to reconnect elsewhere (a
 * `reconnect` frame, through the gateway's `shed`). The agent opens its new connection before it
 * closes the old one, so no tenant loses its connected agent to a move.
 *
 * Gradual: at most `maxMovesPerS` agents per second into each node with room (shared out among the
 * nodes above their share), each agent with a random delay within
 * the step, so the receiving node takes the handshakes spread out (a move costs it a mutual-TLS
 * handshake, a hello and a row write, the same as the reconnect storm after a node's death).
 * Agents asked to move count as still here in the total until they are gone, so that a move under
 * way is not answered with more moves. Before it sheds, a node asks each peer for its load directly:
 * a peer that died (kill -9) still has its last announcement here, but NATS answers "no responders"
 * for it at once, and agents sent towards it would only come back.
 */
import { NodeLoad } from '@gatehouse/protocol';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';

/** Per deployment: two deployments on one NATS server must not count each other's nodes. */
export const loadSubject = (clusterId: string) => `gatehouse.nodes.load.${clusterId}`;
/** How often nodes announce their load and look at the others'. */
export const DEFAULT_BALANCE_MS = 2_000;
/** Agents one node asks to move per second, at most. */
export const DEFAULT_MAX_MOVES_PER_S = 100;
/** Above its share by this fraction, a node sheds (the share itself is rounded up). */
const SLACK = 0.05;
/** A node not heard from for this many intervals is counted out. */
const STALE_STEPS = 3;
/** How long a peer has to answer the check before a shed. */
const CHECK_TIMEOUT_MS = 500;

/** The gateway's side: its connections and the frame that moves one. */
export interface LocalAgents {
  /** Ready connections here, and how many of them were asked to move and are still here. */
  count(): { held: number; moving: number };
  /** Asks up to `n` agents to move, each after a random part of `jitterMs`. Returns how many. */
  shed(n: number, jitterMs: number): number;
}

export interface BalancerOptions {
  nodeId: string;
  /** The same on every node of the deployment (derived from the shared secret key). */
  clusterId: string;
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
  const slack = Math.floor(share * SLACK);
  const receivers = peers.filter((n) => n < share - slack).length;
  // Clearly above the share; or above it at all while a node is clearly below (one empty node
  // among twenty leaves each of the others only 5 % above the share).
  if (held <= share || (held <= share + slack && receivers === 0)) return 0;
  // `maxMoves` is what one receiving node takes per step: the nodes with room share it out among
  // the nodes above their share, so 20 survivors shedding to one restarted node do not send it 20
  // times the pace (each move costs the receiver a handshake, as in a reconnect storm).
  const senders = 1 + peers.filter((n) => n > share).length;
  const pace = Math.max(1, Math.floor((maxMoves * Math.max(1, receivers)) / senders));
  return Math.min(held - share, pace);
};

/** A node id as one NATS subject token (ids are host names and pids: dots, maybe more). */
export const token = (id: string) => id.replace(/[^A-Za-z0-9_-]/g, '_');

export const startBalancer = (nc: NatsConnection, o: BalancerOptions): Balancer => {
  const everyMs = o.everyMs ?? DEFAULT_BALANCE_MS;
  const maxMoves = Math.max(1, Math.ceil(((o.maxMovesPerS ?? DEFAULT_MAX_MOVES_PER_S) * everyMs) / 1000));
  const log = o.log.child({ part: 'balance' });
  const peers = new Map<string, { agents: number; at: number }>();
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let serving = true;

  const subject = loadSubject(o.clusterId);
  const parse = (data: Uint8Array): NodeLoad | null => {
    try {
      const m = NodeLoad.safeParse(JSON.parse(dec.decode(data)));
      return m.success ? m.data : null;
    } catch {
      return null;
    }
  };
  const current = (leaving = false): NodeLoad => {
    const { held, moving } = o.local.count();
    return { node: o.nodeId, agents: held + moving, ...(leaving ? { leaving } : {}) };
  };
  const sub = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return log.warn({ err: err.message }, 'load subscription error');
      const m = parse(msg.data);
      if (!m || m.node === o.nodeId) return;
      if (m.leaving) peers.delete(m.node);
      else peers.set(m.node, { agents: m.agents, at: Date.now() });
    },
  });
  // Direct questions from a node about to shed.
  const asked = nc.subscribe(`${subject}.${token(o.nodeId)}`, {
    callback: (err, msg) => {
      if (!err && serving) msg.respond(enc.encode(JSON.stringify(current())));
    },
  });

  const announce = (leaving = false) => nc.publish(subject, enc.encode(JSON.stringify(current(leaving))));

  const needed = () => {
    const { held, moving } = o.local.count();
    const loads = [...peers.values()].map((p) => p.agents);
    return { held, moving, n: movesFor(held, moving, loads, maxMoves) };
  };

  /** Each peer's load now; a peer that does not answer (it died: "no responders") is counted out. */
  const check = () =>
    Promise.all(
      [...peers.keys()].map(async (node) => {
        try {
          const r = await nc.request(`${subject}.${token(node)}`, undefined, { timeout: CHECK_TIMEOUT_MS });
          const m = parse(r.data);
          if (m && !m.leaving) peers.set(node, { agents: m.agents, at: Date.now() });
          else peers.delete(node);
        } catch {
          peers.delete(node);
        }
      }),
    );

  const step = async () => {
    if (!serving || nc.isClosed()) return;
    announce();
    const now = Date.now();
    for (const [node, p] of peers) if (now - p.at > STALE_STEPS * everyMs) peers.delete(node);
    if (needed().n === 0) return;
    await check();
    const { held, moving, n } = needed();
    if (n === 0 || !serving) return;
    const sent = o.local.shed(n, everyMs);
    if (sent > 0)
      log.info({ held, moving, peers: peers.size, asked: sent }, 'asking agents to move to another node');
  };

  // At once: a node that (re)joins is counted by the others at their next step.
  announce();
  let stepping = false;
  const timer = setInterval(() => {
    if (stepping) return;
    stepping = true;
    step()
      .catch((err: unknown) => log.warn({ err }, 'rebalancing step failed'))
      .finally(() => {
        stepping = false;
      });
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
      asked.unsubscribe();
    },
  };
};
