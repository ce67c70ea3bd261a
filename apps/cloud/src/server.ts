/**
 * Composes the cloud in one process: state, TLS, gateway, authenticator, HTTPS app. Port 0 is
 * allowed (tests): the public URL then takes the port actually bound, before any tenant's
 * provider is built (they are built on first request), so issuers carry the real port.
 */
import type { FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import { registerAdmin } from './admin/index.ts';
import { loadServiceTls, openState } from './bootstrap.ts';
import { type CloudConfig, loadCloudConfig } from './config.ts';
import type { CloudContext, Dispatcher } from './context.ts';
import { type ClusterRouter, createClusterRouter } from './gateway/cluster.ts';
import { createGateway, type Gateway } from './gateway/index.ts';
import { buildApp, oidcOf } from './http/app.ts';
import { createLogger } from './http/logger.ts';
import { createSmartLockout } from './lockout/smart-lockout.ts';
import { ensureNatsGauge } from './metrics/families.ts';
import { createHealth, type Health } from './metrics/health.ts';
import { type MetricsListener, startMetricsListener } from './metrics/listener.ts';
import { addSource, bucketOf } from './metrics/sources.ts';
import { type Retention, startRetention } from './retention.ts';
import { type AuthenticatorService, createAuthenticator } from './signin/authenticator.ts';
import { smartLockoutPolicy } from './signin/lockout.ts';
import { tenantsByActiveAgents } from './store/agents.ts';
import { audit } from './store/audit.ts';
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
  authenticator: AuthenticatorService;
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
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const withPort = (url: string, port: number): string => {
  const u = new URL(url);
  u.port = String(port);
  return u.href.replace(/\/+$/, '');
};

/** A host for a URL: IPv6 literals in brackets; any-address binds are reached on loopback. */
const urlHost = (host: string): string => {
  if (host === '0.0.0.0' || host === '::') return host === '::' ? '[::1]' : '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
};

const notComposed: Dispatcher = {
  validate: async () => ({ outcome: 'no_agent' }),
  activeAgentCount: async () => 0,
};

export const startCloud = async (
  overrides: Partial<Record<keyof CloudConfig, unknown>> = {},
  opts: StartOptions = {},
): Promise<RunningCloud> => {
  const config = loadCloudConfig(opts.env ?? process.env, overrides);
  const log = createLogger(config, opts.logDestination);
  const { db, secrets } = await openState(config, log);
  const cleanup: (() => Promise<unknown>)[] = [async () => db.destroy()];
  // Closed last but for the database: while the node drains, its /readyz still says so.
  let metrics: MetricsListener | undefined;
  cleanup.push(async () => metrics?.close());
  let health: Health | undefined;
  let serving = false;
  const stop = async () => {
    health?.drain();
    // Balancers see 503 on /readyz and move on before the ports close (drainDelayMs).
    if (serving && config.drainDelayMs > 0) await new Promise((r) => setTimeout(r, config.drainDelayMs));
    serving = false;
    for (const step of cleanup.reverse()) {
      await step().catch((err: unknown) => log.error({ err }, 'shutdown step failed'));
    }
    log.flush();
  };
  try {
    const tls = await loadServiceTls(config);
    const ctx: Mutable<CloudContext> = {
      config,
      db,
      log,
      secrets,
      tls,
      dispatcher: notComposed,
      now: Date.now,
    };
    let router: ClusterRouter | undefined;
    const gateway = createGateway(ctx, { onTenantPresence: (t, present) => router?.presence(t, present) });
    ctx.dispatcher = gateway.dispatcher;
    cleanup.push(() => gateway.close());
    if (config.natsUrl) {
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
        db,
        log,
        now: ctx.now,
        inactiveAfterMs: config.inactiveAfterMs,
        reconnectWaitMs: config.agentReconnectWaitMs,
        local: gateway.local,
        closeDeleted: gateway.closeDeleted,
      });
      router = r;
      gateway.useClusterRevocation(r.revocation);
      ctx.dispatcher = r;
      cleanup.push(() => r.close(config.drainMs));
    }
    const smart = createSmartLockout(db, secrets, ctx.now, {
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
    const authenticator = createAuthenticator(ctx, { lockout });
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
    const nats = router;
    if (nats) ensureNatsGauge();
    health = createHealth({ db, log, nats: nats ? () => nats.connected() : undefined });
    const app = buildApp(ctx, { authenticator, gateway, health });
    registerAdmin(app, { ctx, gateway, authenticator, oidc: oidcOf(app)! });
    // Stopping runs these in reverse: relayed requests stop coming, the HTTPS port stops taking
    // connections and finishes the sign-ins it holds, then the agents go.
    cleanup.push(() => app.close());
    cleanup.push(async () => router?.stopServing());

    await app.listen({ port: config.port, host: config.host });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    if (config.port === 0)
      ctx.config = Object.freeze({ ...ctx.config, publicUrl: withPort(config.publicUrl, port) });

    const defaultGatewayUrl = `wss://${new URL(config.publicUrl).hostname}:${config.gatewayPort}`;
    const { port: gatewayPort } = await gateway.listen();
    if (config.gatewayPort === 0 && config.gatewayUrl === defaultGatewayUrl) {
      ctx.config = Object.freeze({ ...ctx.config, gatewayUrl: withPort(config.gatewayUrl, gatewayPort) });
    }
    // The CLI prints issuers and registration commands from these, not from its own environment.
    await recordServiceUrls(db, ctx.config, ctx.now());
    const removeSource = addSource({
      connections: () => {
        const all = gateway.connections();
        const ready = all.filter((c) => c.ready).length;
        return { ready, hello: all.length - ready };
      },
      tenantsByAgents: async () => {
        const counts = { '0': 0, '1': 0, '2': 0, '3+': 0 };
        const rows = await tenantsByActiveAgents(db, {
          now: ctx.now(),
          inactiveAfterMs: config.inactiveAfterMs,
        });
        for (const r of rows) counts[bucketOf(r.agents)] += r.tenants;
        return counts;
      },
      nats: () => nats?.connected(),
    });
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
    log.info({ url: ctx.config.publicUrl, gatewayUrl: ctx.config.gatewayUrl }, 'gatehouse cloud started');
    return {
      url: ctx.config.publicUrl,
      gatewayUrl: ctx.config.gatewayUrl,
      ctx,
      caCert: tls.caCert,
      gateway,
      authenticator,
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
