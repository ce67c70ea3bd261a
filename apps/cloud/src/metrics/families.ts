/**
 * Every metric the cloud exposes, on prom-client's default registry (where process-policy.ts's
 * counter and Node's process metrics already are). Label values come only from small fixed sets
 * (catalog outcomes, message types, grant types): never a tenant, user or agent id, so a cloud
 * with ten thousand tenants has as many series as one with one.
 *
 * The hot path only calls Counter.inc and Histogram.observe. Gauges that need a look at state
 * (connections, tenants by agents, the PostgreSQL pool) are computed at scrape time, from sources
 * the running cloud registers here (metrics/sources.ts).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, register } from 'prom-client';
import { pools, sources, AGENT_BUCKETS as TENANT_BUCKETS, within } from './sources.ts';

export { register };

/** Seconds; sign-ins span a cloud-hash check (tens of ms) to an agent timeout (10 s). */
const SIGNIN_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds; an LDAP bind on a LAN is a few ms, a slow DC a second or more. */
const AGENT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const DB_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];
const SYNC_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600];

export const signIns = new Counter({
  name: 'gatehouse_signins_total',
  help: 'Sign-in attempts by method (page, password_grant), where the password was checked (cloud: a cloud-only account; agent: on premises; none: answered without a check) and catalog outcome',
  labelNames: ['method', 'check', 'outcome'] as const,
});

export const signInDuration = new Histogram({
  name: 'gatehouse_signin_duration_seconds',
  help: 'End-to-end time of a sign-in in the cloud, lockout and sign-in log included',
  labelNames: ['method', 'check'] as const,
  buckets: SIGNIN_BUCKETS,
});

export const agentDuration = new Histogram({
  name: 'gatehouse_agent_duration_seconds',
  help: 'Time an agent reports it spent on a validation (opening the envelope, the bind, the answer)',
  buckets: AGENT_BUCKETS,
});

export const directoryDuration = new Histogram({
  name: 'gatehouse_directory_duration_seconds',
  help: 'Time an agent reports the directory (LDAP/AD bind) took',
  buckets: AGENT_BUCKETS,
});

export const dispatchRetries = new Counter({
  name: 'gatehouse_dispatch_retries_total',
  help: 'Validations sent again to another agent: it could not open the envelope (decrypt), was shutting down (draining), or the frame could not be sent (send)',
  labelNames: ['reason'] as const,
});

export const dispatchFailovers = new Counter({
  name: 'gatehouse_dispatch_failovers_total',
  help: 'Validations in flight when their agent disconnected, re-sealed for another agent',
});

export const dispatchHeld = new Counter({
  name: 'gatehouse_dispatch_held_total',
  help: 'Validations that waited for a reconnecting agent (agentReconnectWaitMs)',
});

export const clusterRelays = new Counter({
  name: 'gatehouse_cluster_relays_total',
  help: 'Scale-out: validations relayed over NATS to the node holding an agent, by result (answered, no_responders, retried, failed)',
  labelNames: ['result'] as const,
});

export const agentFrames = new Counter({
  name: 'gatehouse_agent_frames_total',
  help: 'Agent channel frames by direction (in, out) and message type',
  labelNames: ['direction', 'type'] as const,
});

export const agentMalformed = new Counter({
  name: 'gatehouse_agent_malformed_frames_total',
  help: 'Agent frames refused with protocol_error (not a valid message, no hello first, a second hello)',
});

export const agentChannelErrors = new Counter({
  name: 'gatehouse_agent_channel_errors_total',
  help: 'Agent channel failures: a handler that failed (handler), a socket error (socket), a frame that could not be sent (send), an agent dropped for not reading (slow_reader)',
  labelNames: ['kind'] as const,
});

export const agentSessions = new Counter({
  name: 'gatehouse_agent_sessions_total',
  help: 'Agent connections by event: ready (welcomed), closed',
  labelNames: ['event'] as const,
});

export const lockoutDecisions = new Counter({
  name: 'gatehouse_lockout_decisions_total',
  help: 'Smart lockout answers before a password check: admit, locked, repeat (the same wrong password again)',
  labelNames: ['decision'] as const,
});

export const lockoutLocks = new Counter({
  name: 'gatehouse_lockout_locks_total',
  help: 'Failures that locked a user or an unknown name',
});

export const syncRuns = new Counter({
  name: 'gatehouse_sync_runs_total',
  help: 'Directory sync runs by mode (full, delta) and result: applied, guarded (deletions refused by the threshold), failed (a page could not be applied), interrupted (the agent disconnected or started over)',
  labelNames: ['mode', 'result'] as const,
});

export const syncDuration = new Histogram({
  name: 'gatehouse_sync_duration_seconds',
  help: 'Time from a sync run first page to its last applied, by mode (full, delta)',
  labelNames: ['mode'] as const,
  buckets: SYNC_BUCKETS,
});

export const syncUsers = new Counter({
  name: 'gatehouse_sync_users_total',
  help: 'Users changed by sync runs, by mode (full, delta) and change: created, updated, deleted, skipped',
  labelNames: ['mode', 'change'] as const,
});

export const tokensIssued = new Counter({
  name: 'gatehouse_tokens_issued_total',
  help: 'Successful token endpoint calls by grant type',
  labelNames: ['grant'] as const,
});

export const tokenErrors = new Counter({
  name: 'gatehouse_token_errors_total',
  help: 'Token endpoint calls that failed, by grant type and OAuth error',
  labelNames: ['grant', 'error'] as const,
});

export const dbQueryDuration = new Histogram({
  name: 'gatehouse_db_query_duration_seconds',
  help: 'Database statements by kind (select, insert, update, delete, other) and result (ok, error)',
  labelNames: ['op', 'result'] as const,
  buckets: DB_BUCKETS,
});

export const dbPool = new Gauge({
  name: 'gatehouse_db_pool_connections',
  help: 'PostgreSQL pool connections: total, idle, waiting (requests queued for a connection)',
  labelNames: ['state'] as const,
  collect() {
    this.reset();
    for (const p of [...pools]) {
      if (p.ended) {
        pools.delete(p);
        continue;
      }
      this.inc({ state: 'total' }, p.totalCount);
      this.inc({ state: 'idle' }, p.idleCount);
      this.inc({ state: 'waiting' }, p.waitingCount);
    }
  },
});

export const agentConnections = new Gauge({
  name: 'gatehouse_agent_connections',
  help: 'Agent connections on this node: ready, or still saying hello',
  labelNames: ['state'] as const,
  collect() {
    this.reset();
    this.set({ state: 'ready' }, 0);
    this.set({ state: 'hello' }, 0);
    for (const s of sources) {
      const c = s.connections();
      this.inc({ state: 'ready' }, c.ready);
      this.inc({ state: 'hello' }, c.hello);
    }
  },
});

export const tenantsByAgents = new Gauge({
  name: 'gatehouse_tenants_by_active_agents',
  help: 'Tenants with pass-through authentication on, by how many active agents they have (0, 1, 2, 3+); 0 means their synced users cannot sign in',
  labelNames: ['agents'] as const,
  async collect() {
    const counts = await Promise.all(
      [...sources].map((s) => within(s.tenantsByAgents(), 2_000).catch(() => null)),
    );
    this.reset();
    for (const c of counts) {
      // A database that does not answer leaves the family empty rather than wrong.
      if (c) for (const b of TENANT_BUCKETS) this.inc({ agents: b }, c[b]);
    }
  },
});

/**
 * Scale-out only: made when a node joins NATS, so the embedded shape has no such family (a
 * constant 0 there would read as "NATS down" to an alert).
 */
export const ensureNatsGauge = (): void => {
  if (register.getSingleMetric('gatehouse_nats_connected')) return;
  new Gauge({
    name: 'gatehouse_nats_connected',
    help: 'Scale-out: 1 while this node is connected to NATS',
    collect() {
      this.reset();
      let up: number | undefined;
      for (const s of sources) {
        const c = s.nats();
        if (c !== undefined) up = Math.min(up ?? 1, c ? 1 : 0);
      }
      if (up !== undefined) this.set(up);
    },
  });
};

export const ready = new Gauge({
  name: 'gatehouse_ready',
  help: 'What /readyz answered last: 1 ready, 0 not (database, migrations, NATS or draining)',
});

let defaults = false;
/** Node's process metrics (CPU, memory, event loop lag, GC), once per process. */
export const ensureDefaultMetrics = (): void => {
  if (!defaults && !register.getSingleMetric('process_cpu_seconds_total')) collectDefaultMetrics();
  defaults = true;
};
