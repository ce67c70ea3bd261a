/**
 * The cloud's two TLS ports, bound before anything is composed. Binding first is what lets the
 * configuration be final from the start: with port 0 (tests, several clouds on one host) the public
 * URL and the gateway URL carry the ports actually taken, so no part ever reads a placeholder.
 *
 * Until `serve()` the public port answers 503 `not_ready` (a balancer probing that early moves on); the gateway
 * port gets its handlers from the gateway itself (gateway/server.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { GatehouseError } from '@gatehouse/protocol';
import type { CloudConfig } from './config.ts';
import type { ServiceTls } from './context.ts';
import { errorBody } from './web/errors.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface Listeners {
  /** Browsers, relying parties and agent registration (ordinary TLS). */
  readonly public: Server;
  /** Registered agents' WebSocket, with mutual TLS. */
  readonly gateway: Server;
  /** fastify's `serverFactory`: keeps the app's handler and gives it the bound public server. */
  factory(handler: Handler): Server;
  /** From now on the public port goes to the app's handler (call once the app is ready). */
  serve(): void;
  /** Stops taking connections on the public port and waits for its requests in flight. */
  closePublic(): Promise<void>;
  /** Both ports closed (the gateway closes its own first, with its connections). */
  close(): Promise<void>;
}

const listen = (server: Server, port: number, host: string): Promise<void> =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

const portOf = (server: Server): number => (server.address() as AddressInfo).port;

const closeServer = (server: Server): Promise<void> =>
  new Promise((resolve) => {
    if (!server.listening) return resolve();
    // Idle keep-alive sockets would hold close() open; requests in flight are waited for.
    server.close(() => resolve());
    server.closeIdleConnections();
  });

export const bindListeners = async (config: CloudConfig, tls: ServiceTls): Promise<Listeners> => {
  let handler: Handler | undefined;
  let pending: Handler | undefined;
  const notYet: Handler = (_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json', connection: 'close', 'retry-after': '1' });
    res.end(JSON.stringify(errorBody(new GatehouseError('not_ready'))));
  };
  const pub = createServer({ key: tls.key, cert: tls.cert }, (req, res) => (handler ?? notYet)(req, res));
  // fastify sets this only on servers it creates itself; keep its 72 s (longer than a balancer's
  // usual 60 s idle timeout, so the balancer, not the cloud, closes an idle kept-alive connection).
  pub.keepAliveTimeout = 72_000;
  const gateway = createServer({
    cert: tls.cert,
    key: tls.key,
    requestCert: true,
    // Checked in the gateway against the tenant's CA, so a refusal is a catalog error, not a TLS alert.
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  });
  await listen(pub, config.port, config.host);
  try {
    await listen(gateway, config.gatewayPort, config.host);
  } catch (err) {
    await closeServer(pub);
    throw err;
  }
  return {
    public: pub,
    gateway,
    factory: (h) => {
      pending = h;
      return pub;
    },
    serve: () => {
      handler = pending;
    },
    closePublic: () => closeServer(pub),
    close: async () => {
      await Promise.all([closeServer(pub), closeServer(gateway)]);
    },
  };
};

const withPort = (url: string, port: number): string => {
  const u = new URL(url);
  u.port = String(port);
  return u.href.replace(/\/+$/, '');
};

/**
 * The configuration with the bound ports in its URLs: a public URL given with port 0 takes the
 * public port; a gateway URL left to its default takes the gateway port.
 */
export const resolveAddresses = (config: CloudConfig, listeners: Listeners): CloudConfig => {
  const defaultGatewayUrl = `wss://${new URL(config.publicUrl).hostname}:${config.gatewayPort}`;
  return Object.freeze({
    ...config,
    publicUrl: config.port === 0 ? withPort(config.publicUrl, portOf(listeners.public)) : config.publicUrl,
    gatewayUrl:
      config.gatewayPort === 0 && config.gatewayUrl === defaultGatewayUrl
        ? withPort(config.gatewayUrl, portOf(listeners.gateway))
        : config.gatewayUrl,
  });
};
