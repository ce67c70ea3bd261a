/**
 * Test harness for the agent gateway: the cloud as server.ts composes it, on a temp SQLite
 * directory and free ports, and a scripted agent that plays the agent's side of messages.ts over a
 * real WebSocket.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AGENT_CHANNEL_PATH,
  type AgentMessage,
  type CloudMessage,
  createCsr,
  generateHpkeKeyPair,
  type HpkeKeyPair,
  PROTOCOL_VERSION,
  type RegisterResponse,
} from '@gatehouse/protocol';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import WebSocket from 'ws';
import type { CloudContext } from '../src/context.ts';
import type { Gateway } from '../src/gateway/index.ts';
import type { Oidc } from '../src/oidc/index.ts';
import { startCloud } from '../src/server.ts';
import type { Dispatcher } from '../src/signin/types.ts';
import { createRegistrationToken } from '../src/store/registration-tokens.ts';
import { createTenant } from '../src/store/tenants.ts';

export const ADMIN_PASSWORD = 'Admin-Pa55word-for-tests';

export interface Env {
  ctx: CloudContext;
  gateway: Gateway;
  dispatcher: Dispatcher;
  gatewayPort: number;
  app: FastifyInstance;
  oidc: Oidc;
  appUrl: string;
  tenantId: string;
  adminUpn: string;
  dir: string;
  logFile: string;
  close(): Promise<void>;
  /** Every byte the cloud wrote: its log and its database files (for canary checks). */
  everythingWritten(): string;
}

export const startEnv = async (
  overrides: Record<string, unknown> = {},
  opts: { maxInFlight?: number; maxHeld?: number } = {},
): Promise<Env> => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-gateway-'));
  const logFile = join(dir, 'cloud.log');
  // The cloud's own composition (server.ts), on any free ports, logging to a file the tests read.
  const cloud = await startCloud(
    {
      dataDir: dir,
      port: 0,
      gatewayPort: 0,
      heartbeatMs: 200,
      inactiveAfterMs: 1500,
      logLevel: 'debug',
      ...overrides,
    },
    { env: {}, logDestination: pino.destination({ dest: logFile, sync: true }), gateway: opts },
  );
  const adminUpn = 'admin@contoso.example';
  const { tenantId } = await createTenant(cloud.ctx, {
    name: 'Contoso',
    domain: 'contoso.example',
    admin: { upn: adminUpn, password: ADMIN_PASSWORD },
  });
  return {
    ctx: cloud.ctx,
    gateway: cloud.gateway,
    dispatcher: cloud.dispatcher,
    gatewayPort: Number(new URL(cloud.gatewayUrl).port),
    app: cloud.app,
    oidc: cloud.oidc,
    appUrl: cloud.url,
    tenantId,
    adminUpn,
    dir,
    logFile,
    async close() {
      await cloud.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    everythingWritten() {
      return readdirSync(dir)
        .filter((f) => !f.endsWith('.pem') && !f.endsWith('.key'))
        .map((f) => {
          try {
            return readFileSync(join(dir, f)).toString('latin1');
          } catch {
            return '';
          }
        })
        .join('\n');
    },
  };
};

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): unknown;
}

/** HTTPS request pinned to the service CA, optionally with a client certificate. */
export const https = (
  url: string,
  opts: {
    method?: string;
    body?: string;
    contentType?: string;
    ca: string;
    cert?: string;
    key?: string;
    cookie?: string;
    authorization?: string;
  },
): Promise<HttpAnswer> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    if (opts.cookie) headers.cookie = opts.cookie;
    if (opts.authorization) headers.authorization = opts.authorization;
    const req = request(
      url,
      { method: opts.method ?? 'GET', ca: opts.ca, cert: opts.cert, key: opts.key, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });

export const postJson = (env: Env, path: string, body: unknown) =>
  https(`${env.appUrl}${path}`, { method: 'POST', body: JSON.stringify(body), ca: env.ctx.tls.caCert });

/** What an agent holds after registering: its TLS key and certificate and its HPKE key pair. */
export interface AgentCredentials {
  agentId: string;
  tenantId: string;
  certPem: string;
  keyPem: string;
  hpke: HpkeKeyPair;
}

export const newAgentKeys = async (hostname = 'dc-agent-1') => {
  const { csrPem, keyPem } = await createCsr(hostname);
  const hpke = generateHpkeKeyPair();
  return {
    keyPem,
    hpke,
    body: {
      csr: csrPem,
      hpkePublicKey: Buffer.from(hpke.publicKey).toString('base64url'),
      hostname,
      version: '0.1.0-test',
    },
  };
};

/** Registers an agent with a fresh one-time token. */
export const registerAgent = async (
  env: Env,
  hostname = 'dc-agent-1',
  tenantId = env.tenantId,
): Promise<AgentCredentials> => {
  const { token } = await createRegistrationToken(env.ctx.db, tenantId, 'test', 600, Date.now());
  const keys = await newAgentKeys(hostname);
  const res = await postJson(env, '/agent/v1/register', { ...keys.body, token });
  if (res.status !== 200) throw new Error(`registration failed: ${res.status} ${res.text}`);
  const r = res.json() as RegisterResponse;
  return {
    agentId: r.agentId,
    tenantId: r.tenantId,
    certPem: r.certificate,
    keyPem: keys.keyPem,
    hpke: keys.hpke,
  };
};

/** The scripted agent: sends what the test says and queues what the cloud sends. */
export class ScriptedAgent {
  readonly ws: WebSocket;
  readonly received: CloudMessage[] = [];
  closeCode: number | null = null;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;
  #waiters: { match: (m: CloudMessage) => boolean; resolve: (m: CloudMessage) => void }[] = [];
  /** Called for every Validate (lets a test answer automatically). */
  onMessage: ((m: CloudMessage) => void) | null = null;

  constructor(env: Env, creds: { certPem?: string; keyPem?: string } | null) {
    this.ws = new WebSocket(`wss://127.0.0.1:${env.gatewayPort}${AGENT_CHANNEL_PATH}`, {
      ca: env.ctx.tls.caCert,
      cert: creds?.certPem,
      key: creds?.keyPem,
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          reject(
            Object.assign(new Error(`refused ${res.statusCode}`), {
              status: res.statusCode,
              body: Buffer.concat(chunks).toString(),
            }),
          ),
        );
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code) => {
        this.closeCode = code;
        resolve(code);
      }),
    );
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as CloudMessage;
      this.onMessage?.(m);
      const i = this.#waiters.findIndex((w) => w.match(m));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
      else this.received.push(m);
    });
  }

  send(msg: AgentMessage | Record<string, unknown>): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** The next message of `type` (already received or still to come), or a timeout error. */
  next<T extends CloudMessage['type']>(
    type: T,
    timeoutMs = 3000,
  ): Promise<Extract<CloudMessage, { type: T }>> {
    const i = this.received.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0] as Extract<CloudMessage, { type: T }>);
    return new Promise((resolve, reject) => {
      const w = {
        match: (m: CloudMessage) => m.type === type,
        resolve: resolve as (m: CloudMessage) => void,
      };
      this.#waiters.push(w);
      setTimeout(() => {
        const j = this.#waiters.indexOf(w);
        if (j >= 0) {
          this.#waiters.splice(j, 1);
          reject(new Error(`no ${type} within ${timeoutMs} ms`));
        }
      }, timeoutMs).unref();
    });
  }

  async hello(extra: Record<string, unknown> = {}) {
    await this.opened;
    this.send({
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      version: '0.1.0-test',
      hostname: 'dc-agent-1',
      capabilities: ['validate', 'sync'],
      directory: { ok: true, server: 'ldap://dc1.contoso.example' },
      clock: Date.now(),
      ...extra,
    });
    return this.next('welcome');
  }

  heartbeat(): void {
    this.send({ type: 'heartbeat', clock: Date.now(), directory: { ok: true }, inFlight: 0 });
  }

  /** Heartbeats every `ms` until closed, as a live agent does. */
  keepAlive(ms = 150): void {
    const t = setInterval(
      () => (this.ws.readyState === WebSocket.OPEN ? this.heartbeat() : clearInterval(t)),
      ms,
    );
    t.unref();
    this.ws.once('close', () => clearInterval(t));
  }

  close(): void {
    this.ws.close();
  }
}

/** A connected, welcomed agent that keeps heartbeating. */
export const connectAgent = async (env: Env, creds: AgentCredentials): Promise<ScriptedAgent> => {
  const agent = new ScriptedAgent(env, creds);
  await agent.hello();
  agent.keepAlive();
  return agent;
};

export const waitFor = async (
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 3000,
  what = 'condition',
) => {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
