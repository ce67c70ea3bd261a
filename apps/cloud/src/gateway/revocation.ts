/**
 * A deleted agent's live connections are closed before the delete returns, whichever process
 * deleted it. The row (deleted_at) is the truth; this only tells the processes holding a
 * connection to look now rather than at the next presence write (gateway/presence.ts).
 *
 * - Embedded shape: the cloud listens on DATA_DIR/control.sock (in the 0700 data directory, so
 *   only who can read the database and secret.key can reach it). The CLI commits the delete, asks
 *   there, and waits for the answer.
 * - Scale-out shape: a node subscribes to an agent's revoke subject for as long as it holds one of
 *   its connections, before the hello's database check, so a connection either hears the revoke
 *   or finds the row deleted. The deleting process (CLI, or any node's admin API) requests on that
 *   subject and collects every holder's answer; NATS says "no responders" at once when no node
 *   holds the agent.
 *
 * The receiving side closes only agents whose row is deleted (or gone): the message is a nudge,
 * never an order.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect as connectSocket, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { GatehouseError, Id, TenantId } from '@gatehouse/protocol';
import { connect as connectNats, type NatsConnection, RequestStrategy } from 'nats';
import type { Logger } from 'pino';
import { z } from 'zod';
import { natsConnectOptions } from './nats.ts';

export const RevokeRequest = z.object({
  tenantId: TenantId,
  agentId: Id,
});
// The input side: callers hold ids as plain strings; the receiving node parses the schema.
export type RevokeRequest = z.input<typeof RevokeRequest>;

const RevokeAnswer = z.object({ closed: z.number().int().nonnegative(), node: z.string().max(128) });

/** What a delete did to live connections. `reached` is false when no running cloud could be asked. */
export interface RevocationReport {
  reached: boolean;
  /** Connections closed, over every node that answered. */
  closed: number;
  /** Nodes (or the one embedded cloud) that answered. */
  nodes: number;
}

/** Closes this process's connections of a deleted agent; how many it closed. */
export type CloseDeleted = (req: RevokeRequest) => Promise<number>;

export const controlSocketPath = (dataDir: string) => join(dataDir, 'control.sock');

/** NATS subject tokens may not hold dots, spaces or wildcards; agent ids are UUIDs, but the row
 * allows any string, so anything else is hashed. */
export const revokeSubject = (agentId: string) =>
  `gatehouse.agent.revoke.${/^[A-Za-z0-9_-]{1,128}$/.test(agentId) ? agentId : createHash('sha256').update(agentId).digest('base64url')}`;
/** Every node listens here to drop its cached agent keys of the tenant. */
export const DELETED_SUBJECT = 'gatehouse.agent.deleted';

/** How long a delete waits for the holders to answer; a holder answers in well under a millisecond
 * of work, so this only matters for a node that is stuck (it then serves nothing either). */
export const REVOKE_WAIT_MS = 5_000;
/** After the first answer, how long to wait for a second holder (an agent reconnecting to another
 * node can briefly hold two connections). */
const SECOND_HOLDER_MS = 150;
const MAX_LINE = 4_096;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Embedded shape: answers revoke requests on the control socket. Resolves once listening (or
 * after logging why it cannot: the heartbeat recheck still catches a deleted agent). */
export const serveControlSocket = async (
  path: string,
  o: { log: Logger; closeDeleted: CloseDeleted },
): Promise<{ close(): Promise<void> }> => {
  const server: Server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(5_000, () => sock.destroy());
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) return sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      let req: RevokeRequest;
      try {
        req = RevokeRequest.parse(JSON.parse(line));
      } catch {
        sock.end(`${JSON.stringify({ error: 'validation_failed' })}\n`);
        return;
      }
      o.closeDeleted(req)
        .then((closed) => sock.end(`${JSON.stringify({ closed, node: 'embedded' })}\n`))
        .catch((err: unknown) => {
          o.log.error({ err, agentId: req.agentId }, 'revoke on the control socket failed');
          sock.end(`${JSON.stringify({ error: 'internal_error' })}\n`);
        });
    });
  });
  server.on('error', (err) => o.log.warn({ err: err.message, path }, 'control socket error'));
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path, readableAll: false, writableAll: false }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  try {
    await listen();
  } catch (err) {
    // A socket file left by a cloud that was killed: nobody answers on it, so it can go.
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && !(await answers(path))) {
      rmSync(path, { force: true });
      await listen().catch((e: Error) => o.log.warn({ err: e.message, path }, 'no control socket'));
    } else {
      o.log.warn(
        { err: (err as Error).message, path },
        'no control socket: agents deleted from the CLI are dropped at the next presence write',
      );
    }
  }
  return {
    close: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
};

const answers = (path: string) =>
  new Promise<boolean>((resolve) => {
    const s = connectSocket({ path }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

/** The CLI's side of the control socket. Not reached (no cloud running on this data directory):
 * there is no live connection to close. */
export const askControlSocket = (path: string, req: RevokeRequest): Promise<RevocationReport> =>
  new Promise((resolve, reject) => {
    let buf = '';
    const s = connectSocket({ path });
    s.setEncoding('utf8');
    s.setTimeout(REVOKE_WAIT_MS, () => {
      s.destroy();
      reject(new Error(`the cloud did not answer on ${path} within ${REVOKE_WAIT_MS} ms`));
    });
    s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
    s.on('data', (c: string) => {
      buf += c;
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
        resolve({ reached: false, closed: 0, nodes: 0 });
      else reject(err);
    });
    s.on('end', () => {
      const a = RevokeAnswer.safeParse(safeJson(buf.trim()));
      if (a.success) resolve({ reached: true, closed: a.data.closed, nodes: 1 });
      else reject(new Error(`the cloud refused the revoke: ${buf.trim().slice(0, 200)}`));
    });
  });

const safeJson = (s: string): unknown => {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
};

/** Scale-out shape: asks every node holding the agent to close it, and waits for their answers. */
export const revokeOverNats = async (nc: NatsConnection, req: RevokeRequest): Promise<RevocationReport> => {
  const body = enc.encode(JSON.stringify(req));
  // Nodes drop their cached keys of the tenant: nothing new is sealed to the deleted agent's key.
  nc.publish(DELETED_SUBJECT, body);
  const report: RevocationReport = { reached: true, closed: 0, nodes: 0 };
  try {
    const replies = await nc.requestMany(revokeSubject(req.agentId), body, {
      strategy: RequestStrategy.JitterTimer,
      maxWait: REVOKE_WAIT_MS,
      jitter: SECOND_HOLDER_MS,
    });
    for await (const m of replies) {
      const a = RevokeAnswer.safeParse(safeJson(dec.decode(m.data)));
      if (!a.success) continue;
      report.nodes++;
      report.closed += a.data.closed;
    }
  } catch (err) {
    // No node holds a connection of the agent: nothing to close.
    if ((err as { code?: string }).code !== '503') throw err;
  }
  return report;
};

/** A node's side: subscriptions to the revoke subjects of the agents it holds (counted, since one
 * agent may hold two connections here while it reconnects). */
export const createNatsRevocation = (
  nc: NatsConnection,
  o: { nodeId: string; log: Logger; closeDeleted: CloseDeleted; onDeleted: (tenantId: string) => void },
) => {
  const held = new Map<string, { n: number; sub: ReturnType<NatsConnection['subscribe']> }>();
  const deleted = nc.subscribe(DELETED_SUBJECT, {
    callback: (err, msg) => {
      if (err) return;
      const r = RevokeRequest.safeParse(safeJson(dec.decode(msg.data)));
      if (r.success) o.onDeleted(r.data.tenantId);
    },
  });
  return {
    /** Resolves once the NATS server knows this node holds the agent (a revoke then reaches it). */
    async watch(agentId: string): Promise<void> {
      const h = held.get(agentId);
      if (h) {
        h.n++;
        return;
      }
      const sub = nc.subscribe(revokeSubject(agentId), {
        callback: (err, msg) => {
          if (err) return;
          const r = RevokeRequest.safeParse(safeJson(dec.decode(msg.data)));
          if (!r.success || r.data.agentId !== agentId) return;
          o.closeDeleted(r.data)
            .then((closed) => msg.respond(enc.encode(JSON.stringify({ closed, node: o.nodeId }))))
            .catch((e: unknown) => o.log.error({ err: e, agentId }, 'revoke over NATS failed'));
        },
      });
      held.set(agentId, { n: 1, sub });
      await nc.flush();
    },
    unwatch(agentId: string): void {
      const h = held.get(agentId);
      if (!h) return;
      if (--h.n > 0) return;
      held.delete(agentId);
      h.sub.unsubscribe();
    },
    close(): void {
      deleted.unsubscribe();
      for (const h of held.values()) h.sub.unsubscribe();
      held.clear();
    },
  };
};
export type NatsRevocation = ReturnType<typeof createNatsRevocation>;

/**
 * The operator CLI's revoker, opened before the delete is written: in the scale-out shape a CLI
 * that cannot reach NATS could not close the agent's connections, so it refuses before writing.
 */
export const openRevoker = async (config: {
  natsUrl?: string;
  natsCaFile?: string;
  natsCertFile?: string;
  natsKeyFile?: string;
  natsUser?: string;
  natsPasswordFile?: string;
  dataDir: string;
}): Promise<{ revoke(req: RevokeRequest): Promise<RevocationReport>; close(): Promise<void> }> => {
  if (!config.natsUrl) {
    const path = controlSocketPath(config.dataDir);
    return { revoke: (req) => askControlSocket(path, req), close: async () => {} };
  }
  let nc: NatsConnection;
  try {
    nc = await connectNats({
      ...natsConnectOptions(config.natsUrl, `gatehouse-cli-${process.pid}`, {
        caFile: config.natsCaFile,
        certFile: config.natsCertFile,
        keyFile: config.natsKeyFile,
        user: config.natsUser,
        passwordFile: config.natsPasswordFile,
      }),
      maxReconnectAttempts: 0,
      timeout: 5_000,
    });
  } catch (err) {
    throw new GatehouseError('config_invalid', [
      {
        path: 'natsUrl',
        message: `NATS at ${config.natsUrl} cannot be reached (${(err as Error).message}): nothing was changed, since the cloud nodes could not be told`,
      },
    ]);
  }
  return { revoke: (req) => revokeOverNats(nc, req), close: () => nc.close() };
};
