/**
 * The cloud's one composition root. The parts are built in order, each given what it needs as
 * arguments: state -> bound ports and the final config -> dispatch (gateway, NATS router) ->
 * authenticator -> OIDC providers -> the HTTPS app and the admin API. Nothing is reassigned
 * afterwards; the context is frozen. Port 0 is allowed (tests): the ports are bound before the
 * config is final, so issuers and the gateway URL carry the real ones.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import { registerAdmin } from './admin/index.ts';
import { loadServiceTls, openState } from './bootstrap.ts';
import { type CloudConfig, loadCloudConfig, storedLiveness } from './config.ts';
import type { CloudContext } from './context.ts';
import { createGroupCommit, type GroupCommit } from './db/group-commit.ts';
import { type ClusterRouter, createClusterRouter } from './gateway/cluster.ts';
import { createGateway, type Gateway, type GatewayOptions } from './gateway/index.ts';
import { buildApp } from './http/app.ts';
import { createLogger } from './http/logger.ts';
import { bindListeners, type Listeners, resolveAddresses } from './listeners.ts';
import { createSmartLockout } from './lockout/smart-lockout.ts';
import { ensureNatsGauge } from './metrics/families.ts';
import { createHealth, type Health } from './metrics/health.ts';
import { type MetricsListener, startMetricsListener } from './metrics/listener.ts';
import { addSource, bucketOf } from './metrics/sources.ts';
import { createOidc, type Oidc } from './oidc/index.ts';
import { type Retention, startRetention } from './retention.ts';
import { type AuthenticatorService, createAuthenticator } from './signin/authenticator.ts';
import { smartLockoutPolicy } from './signin/lockout.ts';
import type { TimingMask } from './signin/timing-mask.ts';
import type { Dispatcher } from './signin/types.ts';
import { tenantsByActiveAgents } from './store/agents.ts';
import { audit } from './store/audit.ts';
import { locksRows } from './store/lockout.ts';
import { recordServiceUrls } from './store/service-urls.ts';

export interface RunningCloud {
  /** The public base URL (issuers are URL/TENANT_ID/v2.0). */
  url: string;
  /** Where agents connect (wss://). */
  gatewayUrl: string;
  ctx: CloudContext;
  /** PEM of the CA that issued the service certificate; clients pin it. */
  caCert: string;
  /** The composed parts, for tests and the operator tooling (e.g. revoke an agent, flush sign-in logs). */
  gateway: Gateway;
  /** What carries validations to agents: the gateway's own, or the scale-out router. */
  dispatcher: Dispatcher;
  authenticator: AuthenticatorService;
  /** The tenants' OIDC providers (e.g. to invalidate a tenant after its keys change). */
  oidc: Oidc;
  /** The sign-in and audit log retention sweep (runs on its own; `sweep()` runs one now). */
  retention: Retention;
  app: FastifyInstance;
  /** Readiness; `stop()` starts by draining it. */
  health: Health;
  /** Where /metrics, /livez and /readyz are served apart from the public port; undefined when `metricsPort` is off. */
  metricsUrl: string | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Environment to read GATEHOUSE_CLOUD_* from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where logs go (default: stdout). Tests pass a stream to inspect them. */
  logDestination?: DestinationStream;
  /** The gateway's in-flight and held-request bounds (tests make them small). */
  gateway?: Pick<GatewayOptions, 'maxInFlight' | 'maxHeld'>;
  /** The sign-in timing mask (tests pass one that reports what it recorded and held). */
  timingMask?: TimingMask;
}

/** A host for a URL: IPv6 literals in brackets; any-address binds are reached on loopback. */
const urlHost = (host: string): string => {
  if (host === '0.0.0.0' || host === '::') return host === '::' ? '[::1]' : '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
};

/** Stop steps, run last-registered first. */
type Cleanup = (() => Promise<unknown>)[];

/**
 * This node's gateway and, in the scale-out shape, the NATS router in front of it: the dispatcher
 * the authenticator gets is the router there, the gateway's own here.
 */
const composeDispatch = async (
  ctx: CloudContext,
  listeners: Listeners,
  cleanup: Cleanup,
  incarnation: string,
  bounds: StartOptions['gateway'] = {},
): Promise<{ gateway: Gateway; dispatcher: Dispatcher; router: ClusterRouter | undefined }> => {
  const { config } = ctx;
  let router: ClusterRouter | undefined;
  // Presence is reported from the first agent on; the router exists before the gateway serves.
  const gateway = createGateway(
    ctx,
    { server: listeners.gateway },
    { ...bounds, onTenantPresence: (t, present) => router?.presence(t, present) },
  );
  cleanup.push(() => gateway.close());
  if (!config.natsUrl) return { gateway, dispatcher: gateway.dispatcher, router };
  const r = await createClusterRouter({
    natsUrl: config.natsUrl,
    security: {
      caFile: config.natsCaFile,
      certFile: config.natsCertFile,
      keyFile: config.natsKeyFile,
      user: config.natsUser,
      passwordFile: config.natsPasswordFile,
    },
    nodeId: config.nodeId,
    incarnation,
    // Keyed by the deployment's secret key: every node has it, another deployment does not.
    clusterId: ctx.secrets.mac('cluster', 'nats-cluster-id').slice(0, 16),
    db: ctx.db,
    log: ctx.log,
    now: ctx.now,
    storedLivenessMs: storedLiveness(config),
    reconnectWaitMs: config.agentReconnectWaitMs,
    local: gateway.local,
    closeDeleted: gateway.closeDeleted,
    balance: config.rebalanceMs > 0 ? gateway.balance : undefined,
    rebalanceMs: config.rebalanceMs,
  });
  router = r;
  gateway.useClusterRevocation(r.revocation);
  cleanup.push(() => r.close(config.drainMs));
  return { gateway, dispatcher: r, router };
};

/**
 * Whether the cloud process of an incarnation is gone, for lockout's in-flight counts: NATS knows
 * in the scale-out shape; the embedded one is one process, so any other incarnation is a past one.
 * PostgreSQL without NATS may have several processes nobody tracks: never.
 */
const livenessOf = (ctx: CloudContext, self: string, router: ClusterRouter | undefined) => {
  if (router) return router.isGone;
  if (locksRows(ctx.db)) return undefined;
  return async (incarnation: string) => incarnation !== self;
};

/** The sign-in pipeline with smart lockout, whose locks are audited. */
const composeAuthenticator = (
  ctx: CloudContext,
  dispatcher: Dispatcher,
  writes: GroupCommit,
  liveness: { self: string; isGone?: (incarnation: string) => Promise<boolean> },
  timingMask: TimingMask | undefined,
): AuthenticatorService => {
  const { db, log } = ctx;
  const smart = createSmartLockout(db, ctx.secrets, ctx.now, {
    writes,
    ...liveness,
    onError: (err) => log.warn({ err }, 'smart lockout sweep failed; retried in a minute'),
  });
  const lockout = smartLockoutPolicy(smart, (a, until) => {
    audit(db, {
      tenantId: a.tenantId,
      actor: 'smart-lockout',
      action: 'user.locked',
      target: a.userId ?? a.login,
      detail: { until, location: a.origin.deviceId || a.origin.ip ? 'known-origin' : 'unknown-origin' },
    }).catch((err: unknown) => log.error({ err }, 'audit of a lockout failed'));
  });
  return createAuthenticator(ctx, { dispatcher, lockout, writes, timingMask });
};

/** Gauges read at scrape time: connections, tenants by agent count, NATS. */
const addMetricSources = (ctx: CloudContext, gateway: Gateway, router: ClusterRouter | undefined) =>
  addSource({
    connections: () => {
      const all = gateway.connections();
      const ready = all.filter((c) => c.ready).length;
      return { ready, hello: all.length - ready };
    },
    tenantsByAgents: async () => {
      const counts = { '0': 0, '1': 0, '2': 0, '3+': 0 };
      const rows = await tenantsByActiveAgents(ctx.db, {
        now: ctx.now(),
        inactiveAfterMs: storedLiveness(ctx.config),
      });
      for (const r of rows) counts[bucketOf(r.agents)] += r.tenants;
      return counts;
    },
    nats: () => router?.connected(),
  });

export const startCloud = async (
  overrides: Partial<Record<keyof CloudConfig, unknown>> = {},
  opts: StartOptions = {},
): Promise<RunningCloud> => {
  const base = loadCloudConfig(opts.env ?? process.env, overrides);
  const log = createLogger(base, opts.logDestination);
  const { db, secrets } = await openState(base, log);
  const cleanup: Cleanup = [async () => db.destroy()];
  // Closed last but for the database: while the node drains, its /readyz still says so.
  let metrics: MetricsListener | undefined;
  cleanup.push(async () => metrics?.close());
  let health: Health | undefined;
  let serving = false;
  const stop = async () => {
    health?.drain();
    // Balancers see 503 on /readyz and move on before the ports close (drainDelayMs).
    if (serving && base.drainDelayMs > 0) await new Promise((r) => setTimeout(r, base.drainDelayMs));
    serving = false;
    for (const step of cleanup.reverse()) {
      await step().catch((err: unknown) => log.error({ err }, 'shutdown step failed'));
    }
    log.flush();
  };
  try {
    const tls = await loadServiceTls(base);
    // Bound first, so the configuration every part receives already has the real ports.
    const listeners = await bindListeners(base, tls);
    cleanup.push(() => listeners.close());
    const config = resolveAddresses(base, listeners);
    const ctx: CloudContext = Object.freeze({ config, db, log, secrets, tls, now: Date.now });
    // This start's id: lockout counts name it, so that others can tell when this process is gone.
    const incarnation = randomBytes(8).toString('hex');
    const { gateway, dispatcher, router } = await composeDispatch(
      ctx,
      listeners,
      cleanup,
      incarnation,
      opts.gateway,
    );
    // One group commit for the sign-in path's writes: lockout settlement, the log, the OIDC saves.
    const writes = createGroupCommit(db, { log });
    cleanup.push(() => writes.flush());
    const liveness = { self: incarnation, isGone: livenessOf(ctx, incarnation, router) };
    const authenticator = composeAuthenticator(ctx, dispatcher, writes, liveness, opts.timingMask);
    cleanup.push(() => authenticator.close());
    const retention = startRetention(
      { db, now: ctx.now, log },
      {
        signInDays: config.signInRetentionDays,
        auditDays: config.auditRetentionDays,
        everyMs: config.retentionSweepMs,
      },
    );
    cleanup.push(() => retention.close());
    if (router) ensureNatsGauge();
    health = createHealth({ db, log, nats: router ? () => router.connected() : undefined });
    const oidc = createOidc(ctx, { authenticator, writes });
    const app = buildApp(ctx, { serverFactory: listeners.factory, authenticator, oidc, gateway, health });
    registerAdmin(app, { ctx, gateway, authenticator, oidc });
    // Stopping runs these in reverse: relayed requests stop coming, the HTTPS port stops taking
    // connections and finishes the sign-ins it holds, then the agents go.
    cleanup.push(async () => {
      await listeners.closePublic();
      await app.close();
    });
    cleanup.push(async () => router?.stopServing());
    await app.ready();
    listeners.serve();
    await gateway.start();
    // The CLI prints issuers and registration commands from these, not from its own environment.
    await recordServiceUrls(db, config, ctx.now());
    const removeSource = addMetricSources(ctx, gateway, router);
    cleanup.push(async () => removeSource());
    if (config.metricsPort !== 'off') {
      metrics = await startMetricsListener({
        host: config.metricsHost,
        port: config.metricsPort,
        tls,
        log,
        health,
        tokenFile: config.metricsTokenFile,
      });
    }
    serving = true;
    log.info({ url: config.publicUrl, gatewayUrl: config.gatewayUrl }, 'gatehouse cloud started');
    return {
      url: config.publicUrl,
      gatewayUrl: config.gatewayUrl,
      ctx,
      caCert: tls.caCert,
      gateway,
      dispatcher,
      authenticator,
      oidc,
      retention,
      app,
      health,
      metricsUrl: metrics ? `https://${urlHost(config.metricsHost)}:${metrics.port}` : undefined,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
};
