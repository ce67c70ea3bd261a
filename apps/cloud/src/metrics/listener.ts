/**
 * The metrics listener: Prometheus' /metrics, with /livez and /readyz, on its own host and port
 * (metricsHost, metricsPort; 127.0.0.1:9464 by default), never on the public port. It speaks
 * HTTPS with the service certificate like every other port of the cloud. With metricsTokenFile
 * set, /metrics wants `Authorization: Bearer TOKEN` (Prometheus: `authorization.credentials_file`);
 * the health routes stay open, since probes carry no credentials and say nothing secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { GatehouseError } from '@gatehouse/protocol';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { ServiceTls } from '../context.ts';
import { registerErrorHandling } from '../web/errors.ts';
// Its counter of unhandled rejections belongs on every scrape, also where main.ts did not install it.
import '../process-policy.ts';
import { ensureDefaultMetrics, register } from './families.ts';
import type { Health } from './health.ts';

export interface MetricsListener {
  port: number;
  close(): Promise<void>;
}

/** Probes come every few seconds from every balancer: not worth a log line each. */
export const isProbe = (url: string | undefined): boolean =>
  url === '/livez' || url === '/readyz' || url === '/healthz';

/** /livez and /readyz, on the public app and on the metrics listener alike. */
export const registerHealthRoutes = (app: FastifyInstance, health: Health): void => {
  app.get('/livez', async (_req, reply) => {
    reply.header('cache-control', 'no-store');
    return { status: 'ok' };
  });
  app.get('/readyz', async (_req, reply) => {
    const r = await health.readiness();
    reply.header('cache-control', 'no-store');
    return reply.code(r.status === 'ok' ? 200 : 503).send(r);
  });
};

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Compares in constant time: both sides are hashed first, so their lengths always match. */
export const bearerMatches = (header: unknown, expected: Buffer): boolean => {
  if (typeof header !== 'string') return false;
  const m = /^Bearer (\S+)$/i.exec(header.trim());
  return m !== null && timingSafeEqual(digest(m[1]!), expected);
};

/** Reads the token file (trimmed); an empty file is a configuration error, not an open endpoint. */
export const readMetricsToken = (file: string): Buffer => {
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16)
    throw new GatehouseError('config_invalid', [
      { path: 'metricsTokenFile', message: `${file} must hold a token of at least 16 characters` },
    ]);
  return digest(token);
};

export const startMetricsListener = async (o: {
  host: string;
  port: number;
  tls: ServiceTls;
  log: Logger;
  health: Health;
  tokenFile?: string;
}): Promise<MetricsListener> => {
  const token = o.tokenFile ? readMetricsToken(o.tokenFile) : undefined;
  ensureDefaultMetrics();
  const app = Fastify({
    https: { key: o.tls.key, cert: o.tls.cert },
    loggerInstance: o.log.child({ part: 'metrics' }),
    // A scrape every few seconds is not worth a log line each.
    logController: new LogController({ disableRequestLogging: true }),
  }) as unknown as FastifyInstance;
  registerErrorHandling(app);
  app.get('/metrics', async (req, reply) => {
    if (token && !bearerMatches(req.headers.authorization, token)) {
      reply.header('www-authenticate', 'Bearer');
      throw new GatehouseError('unauthorized');
    }
    reply.type(register.contentType);
    return register.metrics();
  });
  registerHealthRoutes(app, o.health);
  await app.listen({ host: o.host, port: o.port });
  const port = (app.server.address() as AddressInfo).port;
  o.log.info({ host: o.host, port, token: token !== undefined }, 'metrics listening');
  return { port, close: () => app.close() };
};
