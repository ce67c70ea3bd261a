/**
 * The `run` loop: one outbound WebSocket to the gateway with mutual TLS, heartbeats, validation
 * and sync work, certificate renewal, and reconnection forever with jittered backoff. The agent
 * opens no listening socket; `status` reads the file written here on every heartbeat.
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import {
  AGENT_CHANNEL_PATH,
  type AgentMessage,
  CloudMessage,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  parseFrame,
  type SyncPage,
} from '@gatehouse/protocol';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { Backoff } from './backoff.ts';
import type { AgentConfig } from './config.ts';
import { Directory } from './directory/index.ts';
import { agentFor, proxyFor } from './https.ts';
import { renewCertificate } from './renew.ts';
import { type AgentState, loadAgentState, writeStatus } from './state.ts';
import { chunk, collectUsers, deletionGuard, readLastSync, writeLastSyncCount } from './sync.ts';
import { handleValidate } from './validate.ts';
import { VERSION } from './version.ts';

const ACK_TIMEOUT_MS = 60_000;

export interface RunOptions {
  config: AgentConfig;
  log: Logger;
  /** Aborting it stops the agent gracefully (in-flight requests finish first). */
  signal: AbortSignal;
  backoff?: Backoff;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** When to renew: at two thirds of the certificate's lifetime. */
export const renewAt = (certPem: string): number => {
  const c = new X509Certificate(certPem);
  const from = Date.parse(c.validFrom);
  const to = Date.parse(c.validTo);
  return from + ((to - from) * 2) / 3;
};

export const runAgent = async ({
  config,
  log,
  signal,
  backoff = new Backoff(),
}: RunOptions): Promise<void> => {
  let state: AgentState = loadAgentState(config.stateDir);
  const directory = new Directory(config.directory, { log });
  const health = await directory.probe();
  log.info({ directory: health, agentId: state.agentId }, 'agent starting');

  let ws: WebSocket | undefined;
  let connected = false;
  let lastHeartbeatAt: number | undefined;
  let heartbeatMs: number | undefined;
  let inFlight = 0;
  let syncing = false;
  let lastSyncAt = 0;
  let previousHpke: Uint8Array | undefined;
  const acks = new Map<string, (summary: unknown) => void>();

  const status = () =>
    writeStatus(config.stateDir, {
      pid: process.pid,
      connected,
      agentId: state.agentId,
      lastHeartbeatAt,
      heartbeatMs,
      directory: directory.health,
      updatedAt: Date.now(),
    });
  const send = (m: AgentMessage) => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  };

  const runSync = async (reason: string, requestedRunId?: string) => {
    if (syncing || !connected || signal.aborted) return;
    syncing = true;
    const runId = requestedRunId ?? randomUUID();
    try {
      const { users, skipped, groups, server, truncatedMemberships } = await collectUsers(
        directory,
        config.sync.pageSize,
      );
      const prev = readLastSync(config.stateDir);
      for (const [what, before, now] of [
        ['users', prev.count, users.length],
        ['groups', prev.groups, groups?.length],
      ] as const) {
        if (now === undefined) continue;
        const guard = deletionGuard(before, now, config.sync.deletionThreshold);
        if (!guard.ok) {
          log.error(
            { what, previous: before, now, removedFraction: guard.removedFraction },
            `sync refused: more ${what} would be deleted than sync.deletionThreshold allows`,
          );
          return;
        }
      }
      if (truncatedMemberships)
        log.warn({ users: truncatedMemberships }, 'users in more groups than a sync page carries; lists cut');
      // Room is left for the page's own fields. Groups go first: the users' pages name them.
      const size = Math.min(config.sync.pageSize, 500);
      const pages: Pick<SyncPage, 'users' | 'groups'>[] = [
        ...(groups?.length ? chunk(groups, size, MAX_FRAME_BYTES - 1024) : []).map((g) => ({
          groups: g,
          users: [],
        })),
        ...chunk(users, size, MAX_FRAME_BYTES - 1024).map((u) => ({ users: u })),
      ];
      let summary: unknown;
      for (const [seq, page] of pages.entries()) {
        const msg: SyncPage = {
          type: 'sync.page',
          runId,
          mode: 'full',
          seq,
          total: pages.length,
          ...(seq === 0 ? { server } : {}),
          ...(groups ? { withGroups: true } : {}),
          ...page,
          final: seq === pages.length - 1,
        };
        const acked = new Promise<unknown>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`no sync.ack for page ${seq}`)), ACK_TIMEOUT_MS);
          acks.set(`${runId}/${seq}`, (s) => {
            clearTimeout(t);
            resolve(s);
          });
        });
        send(msg);
        summary = await acked;
      }
      writeLastSyncCount(config.stateDir, users.length, groups?.length);
      lastSyncAt = Date.now();
      log.info(
        { reason, runId, users: users.length, groups: groups?.length, skipped, pages: pages.length, summary },
        'sync done',
      );
    } catch (err) {
      log.warn({ err: (err as Error).message, runId }, 'sync failed');
    } finally {
      for (const k of acks.keys()) if (k.startsWith(`${runId}/`)) acks.delete(k);
      syncing = false;
    }
  };

  // The gateway from registration first, then the configured ones. Each failed or lost
  // connection moves on to the next, so a dead cloud node costs one backoff step, not many.
  let gatewayIndex = 0;
  const gateways = () => [...new Set([state.gatewayUrl, ...(config.gatewayUrls ?? [])])];

  const connectOnce = () =>
    new Promise<void>((resolve) => {
      const all = gateways();
      const gateway = all[gatewayIndex++ % all.length]!;
      const url = `${gateway.replace(/\/+$/, '')}${AGENT_CHANNEL_PATH}`;
      const tls = { ca: state.cloudCaPem, key: state.keyPem, cert: state.certPem };
      const proxied = proxyFor(url.replace(/^wss:/, 'https:'), config.proxy);
      const sock = new WebSocket(url, {
        ...tls,
        maxPayload: MAX_FRAME_BYTES,
        handshakeTimeout: 15_000,
        perMessageDeflate: false,
        ...(proxied ? { agent: agentFor(url.replace(/^wss:/, 'https:'), tls, config.proxy) } : {}),
      });
      ws = sock;
      let hbTimer: NodeJS.Timeout | undefined;
      let syncTimer: NodeJS.Timeout | undefined;
      let lastSeen = Date.now();

      sock.on('open', () => {
        send({
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          version: VERSION,
          hostname: hostname(),
          capabilities: [
            'validate',
            'sync.full',
            ...(config.directory.kind === 'openldap' ? ['ppolicy'] : []),
          ],
          directory: directory.health,
          clock: Date.now(),
        });
      });
      sock.on('pong', () => {
        lastSeen = Date.now();
      });
      sock.on('message', (data, isBinary) => {
        lastSeen = Date.now();
        const msg = isBinary ? null : parseFrame(CloudMessage, data.toString());
        if (!msg) return log.warn('malformed frame from the cloud');
        switch (msg.type) {
          case 'welcome': {
            connected = true;
            heartbeatMs = msg.heartbeatMs;
            backoff.connected();
            log.info(
              {
                agentId: msg.agentId,
                tenantId: msg.tenantId,
                gateway,
                heartbeatMs,
                skewMs: Date.now() - msg.serverClock,
              },
              'connected',
            );
            status();
            hbTimer = setInterval(async () => {
              if (Date.now() - lastSeen > 3 * msg.heartbeatMs) {
                log.warn('gateway silent for 3 heartbeats; reconnecting');
                return sock.terminate();
              }
              sock.ping();
              await directory.probe(Math.min(config.directory.timeoutMs, msg.heartbeatMs / 2));
              send({ type: 'heartbeat', clock: Date.now(), directory: directory.health, inFlight });
              lastHeartbeatAt = Date.now();
              status();
            }, msg.heartbeatMs);
            syncTimer = setInterval(() => void runSync('interval'), config.sync.intervalMinutes * 60_000);
            // A flapping connection must not mean a full sync per reconnect.
            if (Date.now() - lastSyncAt >= config.sync.intervalMinutes * 60_000) void runSync('start');
            break;
          }
          case 'validate': {
            if (signal.aborted) {
              send({
                type: 'result',
                id: msg.id,
                outcome: 'agent_error',
                directoryCode: 'shutting-down',
                agentMs: 0,
                directoryMs: 0,
              });
              break;
            }
            inFlight++;
            handleValidate(msg, {
              directory,
              hpkePrivateKey: state.hpkePrivateKey,
              previousHpkePrivateKey: previousHpke,
              tenantId: state.tenantId,
            })
              .then((r) => {
                send(r);
                log.info(
                  { id: msg.id, outcome: r.outcome, code: r.directoryCode, agentMs: r.agentMs },
                  'validated',
                );
              })
              .catch((err: Error) => log.error({ id: msg.id, err: err.message }, 'validation crashed'))
              .finally(() => inFlight--);
            break;
          }
          case 'sync.request':
            void runSync('requested', msg.runId);
            break;
          case 'sync.ack':
            acks.get(`${msg.runId}/${msg.seq}`)?.(msg.summary);
            break;
          case 'error':
            log.warn({ code: msg.code, message: msg.message }, 'error from the cloud');
            break;
        }
      });
      sock.on('unexpected-response', (_req, res) => {
        log.warn({ status: res.statusCode }, 'gateway refused the connection');
        res.resume();
        sock.terminate();
      });
      sock.on('error', (err) => log.warn({ err: err.message }, 'gateway connection error'));
      sock.on('close', (code, reason) => {
        clearInterval(hbTimer);
        clearInterval(syncTimer);
        if (connected) log.info({ code, reason: reason.toString() }, 'disconnected');
        connected = false;
        ws = undefined;
        status();
        resolve();
      });
    });

  // Renewal runs beside the connection; a new certificate means a new connection.
  let renewTimer: NodeJS.Timeout | undefined;
  const scheduleRenewal = () => {
    clearTimeout(renewTimer);
    const wait = Math.min(2 ** 31 - 1, Math.max(0, renewAt(state.certPem) - Date.now()));
    renewTimer = setTimeout(async () => {
      if (Date.now() < renewAt(state.certPem)) return scheduleRenewal();
      try {
        await renewCertificate(config.stateDir, state, config.proxy);
        previousHpke = state.hpkePrivateKey;
        state = loadAgentState(config.stateDir);
        log.info({ renewAt: new Date(renewAt(state.certPem)).toISOString() }, 'certificate renewed');
        backoff.reset();
        ws?.close(1000, 'certificate renewed');
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'certificate renewal failed; retrying in 10 minutes');
        renewTimer = setTimeout(scheduleRenewal, 10 * 60_000);
        return;
      }
      scheduleRenewal();
    }, wait);
    renewTimer.unref();
  };
  scheduleRenewal();

  const onAbort = async () => {
    log.info({ inFlight }, 'stopping: finishing in-flight requests');
    for (let i = 0; i < 300 && inFlight > 0; i++) await new Promise((r) => setTimeout(r, 50));
    ws?.close(1001, 'agent shutting down');
  };
  signal.addEventListener('abort', () => void onAbort(), { once: true });

  try {
    while (!signal.aborted) {
      await connectOnce();
      backoff.disconnected();
      if (signal.aborted) break;
      const delay = backoff.next();
      log.info({ delayMs: delay, attempt: backoff.attempt }, 'reconnecting');
      await sleep(delay, signal);
    }
  } finally {
    clearTimeout(renewTimer);
    await directory.close();
    connected = false;
    status();
    log.info('stopped');
  }
};
