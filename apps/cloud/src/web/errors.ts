/**
 * The one error serializer of the cloud's HTTP answers. Every route of the public app (admin API,
 * gateway registration and device codes, health, OIDC pages' JSON fallbacks) throws a
 * GatehouseError or lets one bubble, and the app's error handler answers with `errorBody`: the
 * catalog's status, `{ error, message, detail? }`, Retry-After when the error says how long, and
 * no-store. A catalog entry with `shown: false` leaves with the generic message and no detail: the
 * detail of such an error (a cause, a configuration path) belongs in the log only. The metrics
 * listener and the raw answers written before fastify runs (listeners.ts, the gateway's upgrade
 * refusals) use the same body.
 *
 * OAuth endpoints are the exception, by their RFC: oidc-provider writes its own `error` and
 * `error_description`, and the password grant uses `oauthErrorBody` below for the same shape.
 */
import { catalog, type ErrorCode, GatehouseError, isGatehouseError } from '@gatehouse/protocol';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { ZodError } from 'zod';

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

export interface ErrorBody {
  error: ErrorCode;
  message: string;
  detail?: unknown;
}

/**
 * The JSON body of an error. `withDetail: false` drops the detail even where it could be shown
 * (the gateway's certificate refusal: a prober must not learn which check failed).
 */
export const errorBody = (err: GatehouseError, { withDetail = true } = {}): ErrorBody => {
  if (!err.entry.shown) return { error: err.code, message: catalog.internal_error.message };
  return withDetail && err.detail !== undefined
    ? { error: err.code, message: err.entry.message, detail: err.detail }
    : { error: err.code, message: err.entry.message };
};

/** Seconds to wait, from a rate_limited error's detail (device-code limits put it there). */
export const retryAfterOf = (err: GatehouseError): number | undefined => {
  const s = (err.detail as { retryAfterS?: unknown } | undefined)?.retryAfterS;
  return err.code === 'rate_limited' && typeof s === 'number' ? s : undefined;
};

/** Answers with the error: what every route's failure goes through (via the app's error handler). */
export const sendError = (reply: FastifyReply, err: unknown): FastifyReply => {
  const ge = toGatehouseError(err);
  if (ge.entry.status >= 500) reply.log.error({ err }, 'request failed');
  const retryAfter = retryAfterOf(ge);
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
  return reply.code(ge.entry.status).header('cache-control', 'no-store').send(errorBody(ge));
};

/** The error and not-found handlers of a fastify app, both answering through `sendError`. */
export const registerErrorHandling = (app: FastifyInstance): void => {
  app.setErrorHandler((err, _req, reply) => sendError(reply, err));
  app.setNotFoundHandler((_req, reply) => sendError(reply, new GatehouseError('not_found')));
};

/** Seconds a client should wait before retrying an infrastructure failure at the token endpoint. */
const OAUTH_RETRY_AFTER_S = 5;

/**
 * An OAuth token endpoint error (RFC 6749 section 5.2): `error` is the catalog's OAuth error,
 * `error_code` ours; the description follows `shown` like every other body. Token endpoint errors
 * are 400 (401 for client authentication) whatever the cause, since OAuth libraries refuse other
 * statuses; retryable causes say so with Retry-After.
 */
export const oauthErrorBody = (
  code: ErrorCode,
  requestId?: string,
): { status: number; retryAfter?: number; body: Record<string, string> } => {
  const entry = catalog[code];
  return {
    status: entry.oauth === 'invalid_client' ? 401 : 400,
    ...(entry.retryable ? { retryAfter: OAUTH_RETRY_AFTER_S } : {}),
    body: {
      error: entry.oauth,
      error_description: entry.shown ? entry.message : catalog.internal_error.message,
      error_code: code,
      ...(requestId ? { request_id: requestId } : {}),
    },
  };
};
