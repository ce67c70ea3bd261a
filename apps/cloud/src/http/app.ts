/**
 * The cloud's HTTPS app: OIDC providers and sign-in pages, the gateway's HTTP routes (agent
 * registration) and health. Every error leaves as the catalog's JSON, with its status (errors.ts). Metrics are
 * not here: they have their own listener (metrics/listener.ts), so /metrics answers 404.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import type { CloudContext } from '../context.ts';
import type { Health } from '../metrics/health.ts';
import { isProbe, registerHealthRoutes } from '../metrics/listener.ts';
import { type Oidc, registerOidc } from '../oidc/index.ts';
import type { Authenticator } from '../signin/types.ts';
import { registerErrorHandling } from '../web/errors.ts';
import { registerSecurityHeaders } from './security-headers.ts';

/** What the app needs of the gateway: its HTTP routes (registration, device codes). */
export interface GatewayRoutes {
  registerRoutes(app: FastifyInstance): void;
}

export interface AppDeps {
  /** Gives fastify the bound public TLS server (listeners.ts) and keeps its handler. */
  serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => Server;
  authenticator: Authenticator;
  oidc: Oidc;
  gateway?: GatewayRoutes;
  health: Health;
}

export const buildApp = (ctx: CloudContext, deps: AppDeps): FastifyInstance => {
  const app = Fastify({
    // The server is bound before the parts are composed, so the config's URLs are final from the start.
    serverFactory: deps.serverFactory,
    loggerInstance: ctx.log,
    trustProxy: ctx.config.trustProxy,
    logController: new LogController({ disableRequestLogging: (req) => isProbe(req.url) }),
    // Bodies are never logged by fastify; keep it that way (no body in any log call).
  }) as unknown as FastifyInstance;

  // First, so its hook runs for every route, the 404 handler and answers written after a hijack.
  registerSecurityHeaders(app, ctx.config.publicUrl);
  app.register(formbody);
  // Parses Cookie for every route; oidc-provider reads and writes its own on the raw request.
  app.register(cookie);

  registerErrorHandling(app);

  // Load balancers probe the public port (docs/operations.md, "Health checks").
  registerHealthRoutes(app, deps.health);
  // The older name, kept for what already probes it: readiness, with the status alone.
  app.get('/healthz', async (_req, reply) => {
    const { status } = await deps.health.readiness();
    return reply.code(status === 'ok' ? 200 : 503).send({ status: status === 'ok' ? 'ok' : 'unavailable' });
  });

  registerOidc(app, ctx, { authenticator: deps.authenticator, oidc: deps.oidc });
  deps.gateway?.registerRoutes(app);
  return app;
};
