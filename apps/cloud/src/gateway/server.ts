/**
 * The mutual-TLS listener agents connect to: the WebSocket channel and certificate renewal. Kept
 * on its own port so browsers are never asked for a client certificate.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import {
  AGENT_CHANNEL_PATH,
  type ErrorCode,
  GatehouseError,
  isGatehouseError,
  MAX_FRAME_BYTES,
  RenewRequest,
  signAgentCsr,
} from '@gatehouse/protocol';
import { type WebSocket, WebSocketServer } from 'ws';
import type { CloudContext } from '../context.ts';
import { updateAgentCert } from '../store/agents.ts';
import { audit } from '../store/audit.ts';
import { getTenantSecrets } from '../store/tenants.ts';
import { errorBody, toGatehouseError } from '../web/errors.ts';
import { type AuthenticatedPeer, authenticatePeer, type TenantCaCache } from './peer.ts';

export const RENEW_PATH = '/agent/v1/renew';
const MAX_BODY_BYTES = 64 * 1024;

export interface GatewayServerDeps {
  ctx: CloudContext;
  cas: TenantCaCache;
  onConnection(ws: WebSocket, peer: AuthenticatedPeer, externalIp: string | null): void;
}

const errorJson = (err: unknown): { status: number; body: string; code: ErrorCode } => {
  const e = toGatehouseError(err);
  // The rejection reason stays in the log: a prober learns nothing about which check failed.
  const body = errorBody(e, { withDetail: e.code !== 'certificate_rejected' });
  return { status: e.entry.status, body: JSON.stringify(body), code: e.code };
};

const statusText = (status: number) =>
  ({ 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 413: 'Payload Too Large' })[status] ??
  'Error';

/** Refuses an upgrade with an HTTP answer the agent can read (not a bare TLS alert). */
const refuseUpgrade = (socket: Duplex, err: unknown) => {
  const { status, body } = errorJson(err);
  socket.end(
    `HTTP/1.1 ${status} ${statusText(status)}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
};

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new GatehouseError('frame_too_large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });

const remoteIp = (req: IncomingMessage): string | null =>
  req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? null;

/** Serves the gateway on its bound mutual-TLS server (listeners.ts owns its TLS options and port). */
export const serveGateway = (server: Server, deps: GatewayServerDeps): { wss: WebSocketServer } => {
  const { ctx, cas } = deps;
  const log = ctx.log.child({ part: 'gateway' });
  const auth = (socket: TLSSocket) => authenticatePeer(socket, { db: ctx.db, cas, now: ctx.now });
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });

  const renew = async (req: IncomingMessage): Promise<unknown> => {
    const peer = await auth(req.socket as TLSSocket);
    let json: unknown;
    try {
      json = JSON.parse(await readBody(req));
    } catch (err) {
      if (isGatehouseError(err)) throw err;
      throw new GatehouseError('validation_failed', [{ path: '(root)', message: 'not JSON' }]);
    }
    const parsed = RenewRequest.safeParse(json);
    if (!parsed.success) {
      throw new GatehouseError(
        'validation_failed',
        parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
      );
    }
    const secrets = await getTenantSecrets(ctx, peer.tenantId);
    let signed: Awaited<ReturnType<typeof signAgentCsr>>;
    try {
      signed = await signAgentCsr(
        { certPem: secrets.caCertPem, keyPem: secrets.caKeyPem },
        parsed.data.csr,
        { agentId: peer.agentId, tenantId: peer.tenantId },
        ctx.config.agentCertDays,
      );
    } catch (err) {
      throw new GatehouseError('validation_failed', [{ path: 'csr', message: 'not a valid CSR' }], {
        cause: err,
      });
    }
    // The old serial is refused from this write on (peer.ts compares serials on every connect).
    await updateAgentCert(ctx.db, peer.agentId, {
      certSerial: signed.serial,
      certNotAfter: signed.notAfter.getTime(),
      hpkePublicKey: parsed.data.hpkePublicKey,
    });
    await audit(
      ctx.db,
      {
        tenantId: peer.tenantId,
        actor: peer.agentId,
        action: 'agent.renewed',
        target: peer.agentId,
        detail: { serial: signed.serial },
      },
      ctx.now(),
    );
    log.info({ agentId: peer.agentId, serial: signed.serial }, 'agent certificate renewed');
    return { certificate: signed.certPem };
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    const answer = (status: number, body: string) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method === 'POST' && path === RENEW_PATH) {
      renew(req).then(
        (body) => answer(200, JSON.stringify(body)),
        (err) => {
          const e = errorJson(err);
          if (e.code === 'internal_error') log.error({ err }, 'renewal failed');
          else
            log.warn(
              { code: e.code, detail: isGatehouseError(err) ? err.detail : undefined },
              'renewal refused',
            );
          answer(e.status, e.body);
        },
      );
      return;
    }
    const e = errorJson(new GatehouseError('not_found'));
    answer(e.status, e.body);
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', (err) => log.debug({ err: err.message }, 'upgrade socket error'));
    const path = (req.url ?? '/').split('?')[0];
    if (path !== AGENT_CHANNEL_PATH) return refuseUpgrade(socket, new GatehouseError('not_found'));
    auth(req.socket as TLSSocket).then(
      (peer) => {
        if (socket.destroyed) return;
        wss.handleUpgrade(req, socket, head, (ws) => deps.onConnection(ws, peer, remoteIp(req)));
      },
      (err) => {
        log.warn(
          { ip: remoteIp(req), detail: isGatehouseError(err) ? err.detail : String(err) },
          'agent refused',
        );
        refuseUpgrade(
          socket,
          isGatehouseError(err) ? err : new GatehouseError('internal_error', undefined, { cause: err }),
        );
      },
    );
  };

  server.on('request', onRequest);
  server.on('upgrade', onUpgrade);
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));
  return { wss };
};
