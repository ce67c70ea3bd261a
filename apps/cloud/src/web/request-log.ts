/**
 * The fastify request's logger, for code that only sees the raw request: oidc-provider's Koa
 * context (the password grant) gets node's IncomingMessage, not fastify's request, and so not its
 * reqId. A WeakMap, so nothing outlives the request.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';

type RequestLog = Pick<Logger, 'info'>;

const logs = new WeakMap<IncomingMessage, RequestLog>();

export const bindRequestLog = (raw: IncomingMessage, log: RequestLog): void => {
  logs.set(raw, log);
};

export const requestLogOf = (raw: IncomingMessage): RequestLog | undefined => logs.get(raw);
