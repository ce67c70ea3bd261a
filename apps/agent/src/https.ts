/**
 * JSON over HTTPS to the cloud with a pinned CA (the only trust anchor; never the system store
 * plus "skip verification"), optionally with the agent's client certificate, optionally through
 * an HTTP CONNECT proxy.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

export interface TlsMaterial {
  ca: string;
  key?: string;
  cert?: string;
}

/** The proxy to use for `target`, from config or HTTPS_PROXY/https_proxy, honouring NO_PROXY. */
export const proxyFor = (target: string, configured?: string, env = process.env): string | undefined => {
  const proxy = configured ?? env.HTTPS_PROXY ?? env.https_proxy;
  if (!proxy) return undefined;
  const host = new URL(target).hostname.toLowerCase();
  const noProxy = (env.NO_PROXY ?? env.no_proxy ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (
    noProxy.some(
      (n) => n === '*' || host === n.replace(/^\./, '') || host.endsWith(n.startsWith('.') ? n : `.${n}`),
    )
  ) {
    return undefined;
  }
  return proxy;
};

/** Opens a tunnel to host:port through an HTTP proxy with CONNECT. */
export const connectThroughProxy = (
  proxy: string,
  host: string,
  port: number,
  timeoutMs = 10_000,
): Promise<Duplex> =>
  new Promise((resolve, reject) => {
    const p = new URL(proxy);
    const headers: Record<string, string> = { host: `${host}:${port}` };
    if (p.username) {
      const cred = `${decodeURIComponent(p.username)}:${decodeURIComponent(p.password)}`;
      headers['proxy-authorization'] = `Basic ${Buffer.from(cred).toString('base64')}`;
    }
    const req = http.request({
      host: p.hostname,
      port: Number(p.port || 80),
      method: 'CONNECT',
      path: `${host}:${port}`,
      headers,
      timeout: timeoutMs,
    });
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) resolve(socket);
      else {
        socket.destroy();
        reject(new Error(`proxy refused CONNECT: ${res.statusCode}`));
      }
    });
    req.once('timeout', () => req.destroy(new Error('proxy CONNECT timed out')));
    req.once('error', reject);
    req.end();
  });

/** An https.Agent whose TLS connections go through the proxy's CONNECT tunnel (used by ws too). */
export class ProxyAgent extends https.Agent {
  readonly #proxy: string;
  constructor(proxy: string, opts: https.AgentOptions = {}) {
    super({ ...opts, keepAlive: false });
    this.#proxy = proxy;
  }

  override createConnection(
    options: http.ClientRequestArgs,
    cb?: (err: Error | null, s: Duplex) => void,
  ): Duplex | undefined {
    // The agent passes the merged request and agent options: ca, key, cert, servername...
    const o = options as tls.ConnectionOptions & { host?: string; port?: number | string };
    const host = o.host ?? 'localhost';
    connectThroughProxy(this.#proxy, host, Number(o.port ?? 443)).then(
      (socket) =>
        cb?.(
          null,
          tls.connect({ ...o, socket, servername: o.servername || (isIP(host) ? undefined : host) }),
        ),
      (err: Error) => cb?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

export const agentFor = (url: string, t: TlsMaterial, proxy?: string): https.Agent => {
  const opts: https.AgentOptions = { ca: t.ca, key: t.key, cert: t.cert, minVersion: 'TLSv1.2' };
  const p = proxyFor(url, proxy);
  return p ? new ProxyAgent(p, opts) : new https.Agent(opts);
};

export interface JsonResponse {
  status: number;
  body: unknown;
}

export const postJson = (
  url: string,
  body: unknown,
  t: TlsMaterial,
  opts: { proxy?: string; timeoutMs?: number } = {},
): Promise<JsonResponse> =>
  new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.protocol !== 'https:') return reject(new Error(`refusing a non-https cloud URL: ${url}`));
    const data = Buffer.from(JSON.stringify(body));
    const agent = agentFor(url, t, opts.proxy);
    const req = https.request(
      u,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': data.length,
          accept: 'application/json',
        },
        timeout: opts.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          agent.destroy();
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : null;
          } catch {}
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.once('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.once('error', (err) => {
      agent.destroy();
      reject(err);
    });
    req.end(data);
  });
