/**
 * The cloud's HTTPS app: OIDC providers and sign-in pages, the gateway's HTTP routes (agent
 * registration) and health. Every error leaves as the catalog's JSON, with its status. Metrics are
 * not here: they have their own listener (metrics/listener.ts), so /metrics answers 404.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import formbody from '@fastify/formbody';
import { GatehouseError, isGatehouseError } from '@gatehouse/protocol';
import Fastify, { type FastifyError, type FastifyInstance, LogController } from 'fastify';
import { ZodError } from 'zod';
import type { CloudContext } from '../context.ts';
import type { Health } from '../metrics/health.ts';
import { isProbe, registerHealthRoutes } from '../metrics/listener.ts';
import { type Oidc, registerOidc } from '../oidc/index.ts';
import type { Authenticator } from '../signin/types.ts';
import { registerSecurityHeaders } from './security-headers.ts';

/** What the app needs of the gateway: its HTTP routes (registration, device codes, renewal). */
export interface GatewayRoutes {
  registerRoutes(app: FastifyInstance, deps: { authenticator: Authenticator }): void;
}

/** Maps any thrown error to a catalog error; unexpected ones become internal_error. */
export const toGatehouseError = (err: unknown): GatehouseError => {
  if (isGatehouseError(err)) return err;
  if (err instanceof ZodError) return new GatehouseError('validation_failed', err.issues);
  const fe = err as Partial<FastifyError>;
  if (fe.validation) return new GatehouseError('validation_failed', fe.validation);
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status === 413) return new GatehouseError('frame_too_large');
  if (status === 404) return new GatehouseError('not_found');
  if (status === 401) return new GatehouseError('unauthorized');
  if (status === 403) return new GatehouseError('forbidden');
  // Fastify's own 4xx (malformed JSON, unsupported media type): the request is at fault.
  if (status >= 400 && status < 500) return new GatehouseError('validation_failed', { reason: fe.message });
  return new GatehouseError('internal_error', undefined, { cause: err });
};

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

  app.setErrorHandler((err, req, reply) => {
    const ge = toGatehouseError(err);
    if (ge.entry.status >= 500) req.log.error({ err }, 'request failed');
    // Internal details stay in the log, not in the answer.
    const body = ge.code === 'internal_error' ? new GatehouseError('internal_error').toJSON() : ge.toJSON();
    reply.code(ge.entry.status).send(body);
  });
  app.setNotFoundHandler((_req, reply) => {
    reply.code(404).send(new GatehouseError('not_found').toJSON());
  });

  // Load balancers probe the public port (docs/operations.md, "Health checks").
  registerHealthRoutes(app, deps.health);
  // The older name, kept for what already probes it: readiness, with the status alone.
  app.get('/healthz', async (_req, reply) => {
    const { status } = await deps.health.readiness();
    return reply.code(status === 'ok' ? 200 : 503).send({ status: status === 'ok' ? 'ok' : 'unavailable' });
  });

  registerOidc(app, ctx, { authenticator: deps.authenticator, oidc: deps.oidc });
  deps.gateway?.registerRoutes(app, { authenticator: deps.authenticator });
  return app;
};
