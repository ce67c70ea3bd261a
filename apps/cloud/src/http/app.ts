/**
 * The cloud's HTTPS app: OIDC providers and sign-in pages, the gateway's HTTP routes (agent
 * registration), health and metrics. Every error leaves as the catalog's JSON, with its status.
 */
import formbody from '@fastify/formbody';
import { GatehouseError, isGatehouseError } from '@gatehouse/protocol';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { collectDefaultMetrics, register } from 'prom-client';
import { ZodError } from 'zod';
import type { CloudContext } from '../context.ts';
import { type Oidc, registerOidc } from '../oidc/index.ts';
import type { Authenticator } from '../signin/types.ts';
import { registerSecurityHeaders } from './security-headers.ts';

/** What the app needs of the gateway: its HTTP routes (registration, device codes, renewal). */
export interface GatewayRoutes {
  registerRoutes(app: FastifyInstance, deps: { authenticator: Authenticator }): void;
}

const oidcs = new WeakMap<FastifyInstance, Oidc>();
/** The app's per-tenant provider cache, e.g. to invalidate a tenant after its keys change. */
export const oidcOf = (app: FastifyInstance): Oidc | undefined => oidcs.get(app);

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

const ensureDefaultMetrics = (() => {
  let done = false;
  return () => {
    if (!done && !register.getSingleMetric('process_cpu_seconds_total')) collectDefaultMetrics();
    done = true;
  };
})();

export const buildApp = (
  ctx: CloudContext,
  deps: { authenticator: Authenticator; gateway?: GatewayRoutes },
): FastifyInstance => {
  const app = Fastify({
    https: { key: ctx.tls.key, cert: ctx.tls.cert },
    loggerInstance: ctx.log,
    trustProxy: ctx.config.trustProxy,
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

  app.get('/healthz', async (_req, reply) => {
    try {
      await sql`select 1`.execute(ctx.db);
      return { status: 'ok' };
    } catch (err) {
      ctx.log.error({ err }, 'health check: database unreachable');
      return reply.code(503).send({ status: 'unavailable' });
    }
  });

  ensureDefaultMetrics();
  app.get('/metrics', async (_req, reply) => {
    reply.type(register.contentType);
    return register.metrics();
  });

  oidcs.set(app, registerOidc(app, ctx, { authenticator: deps.authenticator }));
  deps.gateway?.registerRoutes(app, { authenticator: deps.authenticator });
  return app;
};
