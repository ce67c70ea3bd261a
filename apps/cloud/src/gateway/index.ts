/**
 * The agent gateway: registration routes on the main app, the mutual-TLS WebSocket listener,
 * live agent connections, the dispatcher that carries sign-ins to them, and sync ingestion.
 */
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { CloudContext } from '../context.ts';
import { getAgent, pruneAgents, touchAgent } from '../store/agents.ts';
import { pruneDeviceCodes } from '../store/device-codes.ts';
import { setDirectoryLockout } from '../store/tenants.ts';
import type { LocalAgents } from './balance.ts';
import { AgentConnection, type ConnectionHooks, type ConnectionInfo } from './connection.ts';
import { AgentDispatcher } from './dispatcher.ts';
import type { AuthenticatedPeer } from './peer.ts';
import { TenantCaCache } from './peer.ts';
import { startPresenceWriter } from './presence.ts';
import { registerRegistrationRoutes } from './registration.ts';
import {
  type CloseDeleted,
  controlSocketPath,
  type RevocationReport,
  type RevokeRequest,
  serveControlSocket,
} from './revocation.ts';
import { serveGateway } from './server.ts';
import { SyncIngest, type SyncSummary } from './sync.ts';

export type { ConnectionInfo } from './connection.ts';
export type { SyncSummary } from './sync.ts';

export interface Gateway {
  readonly dispatcher: AgentDispatcher;
  /** This node's own agents (the scale-out router wraps it). */
  readonly local: AgentDispatcher;
  /** Agent registration and device authorization, on the main HTTPS app. */
  registerRoutes(app: FastifyInstance): void;
  /** Starts serving agents on the bound gateway server, and the sweeps and control socket. */
  start(): Promise<void>;
  close(): Promise<void>;
  /** Live connections (ready or still saying hello). */
  connections(): ConnectionInfo[];
  /** Closes the agent's live connections on this node at once. Returns how many. */
  revokeAgent(agentId: string): number;
  /** This node's side of a revoke: closes the agent's connections here if its row is deleted. */
  closeDeleted: CloseDeleted;
  /**
   * After a delete: closes the agent's connections wherever they are (every node, in the scale-out
   * shape) and resolves once each holder has closed them.
   */
  revokeDeleted(req: RevokeRequest): Promise<RevocationReport>;
  /** This node's agents for rebalancing (scale-out): how many, and asking some to move. */
  readonly balance: LocalAgents;
  /** Scale-out: revokes travel over NATS (set by the router before the gateway listens). */
  useClusterRevocation(r: ClusterRevocation): void;
  /** Asks one connected agent of the tenant for a full sync; returns its id, or null when none is connected. */
  /** Asks one usable agent of the tenant for a run (delta: the changes since its mark). */
  requestSync(tenantId: string, runId?: string, mode?: 'full' | 'delta'): string | null;
  /** Called after each applied sync run (admin center, tests). */
  onSyncFinished(listener: (tenantId: string, summary: SyncSummary) => void): void;
}

/** The scale-out router's part in revocation (gateway/cluster.ts). */
export interface ClusterRevocation {
  /** A connection of the agent opened here; resolves once a revoke of it would reach this node. */
  watch(agentId: string): Promise<void>;
  unwatch(agentId: string): void;
  revoke(req: RevokeRequest): Promise<RevocationReport>;
}

export interface GatewayOptions {
  maxInFlight?: number;
  /** Requests waiting for a reconnecting agent at once (default DEFAULT_MAX_HELD). */
  maxHeld?: number;
  /** This node gained its first (true) or lost its last (false) agent of a tenant. */
  onTenantPresence?: (tenantId: string, present: boolean) => void;
}

export interface GatewayDeps {
  /** The mutual-TLS server, already bound (listeners.ts). */
  server: Server;
}

export const createGateway = (ctx: CloudContext, deps: GatewayDeps, opts: GatewayOptions = {}): Gateway => {
  const { config } = ctx;
  const log = ctx.log.child({ part: 'gateway' });
  const dispatcher = new AgentDispatcher({
    log,
    now: ctx.now,
    inactiveAfterMs: config.inactiveAfterMs,
    reconnectWaitMs: config.agentReconnectWaitMs,
    maxInFlight: opts.maxInFlight,
    maxHeld: opts.maxHeld,
    onTenantPresence: opts.onTenantPresence,
  });
  const live = new Set<AgentConnection>();
  const syncListeners: ((tenantId: string, s: SyncSummary) => void)[] = [];
  const sync = new SyncIngest({
    db: ctx.db,
    log,
    now: ctx.now,
    onFinished: (tenantId, s) => {
      for (const l of syncListeners) l(tenantId, s);
    },
  });
  const cas = new TenantCaCache(ctx.db);
  let cluster: ClusterRevocation | undefined;
  let control: { close(): Promise<void> } | undefined;
  /** Scale-out: each connection's revoke subscription, awaited before its hello reads the row. */
  const watching = new WeakMap<AgentConnection, Promise<void>>();

  const revoke = (conn: AgentConnection, why: string) => {
    if (conn.closed) return;
    dispatcher.revoked(conn);
    conn.sendError('certificate_rejected', why);
    conn.close(1008, why);
  };

  // The directory's lockout policy, as agents report it; written only when it changes.
  const reportedPolicy = new Map<string, string>();
  const recordDirectoryPolicy = async (conn: AgentConnection) => {
    const p = conn.directory?.lockoutPolicy;
    if (!p) return;
    const key = `${p.threshold}/${p.durationS}`;
    if (reportedPolicy.get(conn.tenantId) === key) return;
    reportedPolicy.set(conn.tenantId, key);
    await setDirectoryLockout(ctx.db, conn.tenantId, {
      threshold: p.threshold,
      durationS: Math.round(p.durationS),
    });
  };

  const hooks: ConnectionHooks = {
    onHello: async (conn) => {
      // Subscribed to the agent's revokes before its row is read: a delete committed meanwhile is
      // either seen here or reaches this connection.
      await watching.get(conn);
      if (!(await touchAgent(ctx.db, conn.agentId, ctx.now(), conn.externalIp ?? undefined)))
        return revoke(conn, 'the agent was deleted');
      await recordDirectoryPolicy(conn);
    },
    onReady: (conn) => dispatcher.add(conn),
    onClosed: (conn) => {
      live.delete(conn);
      dispatcher.remove(conn);
      void sync.onClosed(conn);
    },
    onResult: (conn, msg) => dispatcher.onResult(conn, msg),
    // Presence is written in batches (presence.ts), which also recheck the rows.
    onHeartbeat: (conn) => recordDirectoryPolicy(conn),
    onSyncPage: (conn, page) => sync.onPage(conn, page),
  };

  const onConnection = (ws: WebSocket, peer: AuthenticatedPeer, externalIp: string | null) => {
    const conn = new AgentConnection(
      ws,
      { ...peer, hpkeKey: new Uint8Array(Buffer.from(peer.hpkePublicKey, 'base64url')), externalIp },
      { log, now: ctx.now, hooks, heartbeatMs: config.heartbeatMs },
    );
    live.add(conn);
    if (cluster) {
      const c = cluster;
      watching.set(
        conn,
        c
          .watch(conn.agentId)
          .catch((err: unknown) => log.warn({ err, agentId: conn.agentId }, 'revoke watch failed')),
      );
      ws.once('close', () => c.unwatch(conn.agentId));
    }
  };

  const { server } = deps;
  const { wss } = serveGateway(server, { ctx, cas, onConnection });

  // Silent agents are dropped: a half-open TCP connection must not keep receiving sign-ins.
  const sweepMs = Math.max(100, Math.min(1_000, Math.floor(config.inactiveAfterMs / 4)));
  let sweeper: ReturnType<typeof setInterval> | undefined;
  const sweep = () => {
    const cutoff = ctx.now() - config.inactiveAfterMs;
    for (const c of live) {
      if (c.lastHeardAt < cutoff) {
        log.warn({ agentId: c.agentId, lastHeardAt: c.lastHeardAt }, 'agent silent; dropping connection');
        c.terminate();
      }
    }
  };

  const presence = startPresenceWriter({
    db: ctx.db,
    log,
    now: ctx.now,
    everyMs: config.presenceWriteMs,
    inactiveAfterMs: config.inactiveAfterMs,
    connections: () => live,
    onDeleted: (conn) => revoke(conn, 'the agent was deleted'),
  });

  const pruneAfterMs = config.pruneAfterDays * 86_400_000;
  let pruner: ReturnType<typeof setInterval> | undefined;
  const prune = async () => {
    try {
      const n = await pruneAgents(ctx.db, ctx.now(), pruneAfterMs);
      if (n > 0) log.info({ pruned: n }, 'inactive agents pruned');
      // Device codes live ten minutes; anyone may ask for one, so old rows must not pile up.
      await pruneDeviceCodes(ctx.db, ctx.now() - 86_400_000);
    } catch (err) {
      log.error({ err }, 'agent pruning failed');
    }
  };

  const revokeLocal = (agentId: string) => {
    let n = 0;
    for (const c of live) {
      if (c.agentId === agentId && !c.closed) {
        revoke(c, 'the agent was deleted');
        n++;
      }
    }
    return n;
  };
  const closeDeleted: CloseDeleted = async ({ tenantId, agentId }) => {
    const a = await getAgent(ctx.db, agentId);
    // Only the row decides: a revoke of a live agent (or another tenant's) closes nothing.
    if (a && (a.deletedAt === null || a.tenantId !== tenantId)) return 0;
    const n = revokeLocal(agentId);
    if (n > 0) log.info({ agentId, tenantId, closed: n }, 'deleted agent disconnected');
    return n;
  };

  const gateway: Gateway = {
    dispatcher,
    local: dispatcher,
    registerRoutes: (app) => registerRegistrationRoutes(app, ctx),
    start: async () => {
      sweeper = setInterval(sweep, sweepMs);
      sweeper.unref();
      void prune();
      pruner = setInterval(prune, Math.max(1_000, Math.min(3_600_000, pruneAfterMs / 4)));
      pruner.unref();
      log.info({ port: (server.address() as AddressInfo).port }, 'agent gateway serving');
      // Embedded shape: the operator CLI asks here to close the agents it deletes.
      if (!cluster)
        control = await serveControlSocket(controlSocketPath(config.dataDir), { log, closeDeleted });
    },
    close: async () => {
      presence.close();
      clearInterval(sweeper);
      clearInterval(pruner);
      await control?.close();
      for (const c of [...live]) c.terminate();
      dispatcher.closeAll();
      wss.close();
      await new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
    connections: () => [...live].map((c) => c.info()),
    revokeAgent: revokeLocal,
    closeDeleted,
    revokeDeleted: async (req) =>
      cluster ? cluster.revoke(req) : { reached: true, closed: await closeDeleted(req), nodes: 1 },
    balance: createLocalAgents(live, ctx.now, config.inactiveAfterMs, log),
    useClusterRevocation: (r) => {
      cluster = r;
    },
    requestSync: (tenantId, runId, mode = 'full') => {
      const cutoff = ctx.now() - config.inactiveAfterMs;
      const candidates = dispatcher.connectionsOf(tenantId).filter((c) => c.usable(cutoff));
      const conn = candidates.sort((a, b) => a.pending.size - b.pending.size)[0];
      if (!conn) return null;
      conn.send({ type: 'sync.request', mode, ...(runId ? { runId } : {}) });
      log.info({ tenantId, agentId: conn.agentId, runId, mode }, 'sync requested');
      return conn.agentId;
    },
    onSyncFinished: (listener) => {
      syncListeners.push(listener);
    },
  };
  return gateway;
};

/** How long an agent asked to move counts as moving; one still here after that may be asked again. */
const MOVE_TIMEOUT_MS = 60_000;

/**
 * The gateway's side of rebalancing (balance.ts). Agents to move are taken first from the tenants
 * with the most connections here, one per tenant per round, so a tenant's agents end up on
 * different nodes (one node's death then leaves it the others), and idle connections first.
 * Only agents that said they understand the frame (capability `reconnect`) are asked.
 */
const createLocalAgents = (
  live: Set<AgentConnection>,
  now: () => number,
  inactiveAfterMs: number,
  log: Logger,
): LocalAgents => {
  const moving = (c: AgentConnection) => c.movingSince !== null && now() - c.movingSince < MOVE_TIMEOUT_MS;
  return {
    count() {
      let held = 0;
      let inMove = 0;
      for (const c of live) {
        if (!c.ready || c.closed) continue;
        if (moving(c)) inMove++;
        else held++;
      }
      return { held, moving: inMove };
    },
    shed(n, jitterMs) {
      const cutoff = now() - inactiveAfterMs;
      const byTenant = new Map<string, AgentConnection[]>();
      for (const c of live) {
        if (!c.usable(cutoff) || c.draining || moving(c) || !c.capabilities.includes('reconnect')) continue;
        let list = byTenant.get(c.tenantId);
        if (!list) {
          list = [];
          byTenant.set(c.tenantId, list);
        }
        list.push(c);
      }
      const groups = [...byTenant.values()]
        .map((list) => list.sort((a, b) => b.pending.size - a.pending.size))
        .sort((a, b) => b.length - a.length);
      let asked = 0;
      // Level by level from the largest tenant down: each round takes one from every tenant that
      // still has at least `level` connections here.
      for (let level = groups[0]?.length ?? 0; level >= 1 && asked < n; level--) {
        for (const list of groups) {
          if (asked >= n) break;
          if (list.length < level) continue;
          const c = list.pop()!;
          if (!c.send({ type: 'reconnect', reason: 'rebalance', jitterMs })) continue;
          c.movingSince = now();
          asked++;
        }
      }
      if (asked > 0) log.debug({ asked, tenants: groups.length }, 'agents asked to move');
      return asked;
    },
  };
};
