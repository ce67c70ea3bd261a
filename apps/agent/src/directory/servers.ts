/**
 * Directory servers in preference order, with health marking, and the ldapts client factory.
 * A server that fails at the network level is marked down and skipped until a background probe
 * (or a last-resort attempt when every server is down) sees it answer again.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { type ConnectionOptions, checkServerIdentity } from 'node:tls';
import { Client } from 'ldapts';
import type { DirectoryConfig } from '../config.ts';

export interface ServerState {
  readonly url: string;
  up: boolean;
  lastError?: string;
  downSince?: number;
}

const hostOf = (url: string) => new URL(url).hostname.replace(/^\[|\]$/g, '');

/** Opens ldapts clients with the configured TLS: ldaps:// or StartTLS, pinned CA when given. */
export class ClientFactory {
  readonly #cfg: DirectoryConfig;
  readonly #ca?: string;

  constructor(cfg: DirectoryConfig) {
    this.#cfg = cfg;
    this.#ca = cfg.caFile ? readFileSync(cfg.caFile, 'utf8') : undefined;
  }

  #tls(url: string): ConnectionOptions {
    const host = hostOf(url);
    // tlsServerName: the certificate is checked against that name instead of the URL's host (a DC
    // reached by IP, a certificate without SAN). The chain is still verified against the pinned CA.
    const name = this.#cfg.tlsServerName ?? host;
    return {
      host,
      ...(net.isIP(name) ? {} : { servername: name }),
      checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
      minVersion: 'TLSv1.2',
      ...(this.#ca ? { ca: this.#ca } : {}),
    };
  }

  /**
   * A client for `url` (ldapts connects on first use; with StartTLS it is upgraded here). With StartTLS the client may never open a
   * second plain connection by itself: ldapts reconnects transparently, and a bind sent on such a
   * connection would travel in clear text, so any reconnect attempt fails instead.
   */
  async open(url: string): Promise<Client> {
    const ldaps = url.toLowerCase().startsWith('ldaps:');
    let opened = false;
    const client = new Client({
      url,
      connectTimeout: this.#cfg.connectTimeoutMs,
      timeout: this.#cfg.timeoutMs,
      // tlsOptions make ldapts use TLS even for ldap:// URLs: only pass them for ldaps://.
      ...(ldaps ? { tlsOptions: this.#tls(url) } : {}),
      createConnection: ((port: number, host: string) => {
        if (opened && this.#cfg.startTls) {
          const s = new net.Socket();
          process.nextTick(() =>
            s.destroy(Object.assign(new Error('StartTLS connection lost'), { code: 'ECONNRESET' })),
          );
          return s;
        }
        opened = true;
        const socket = net.connect(port, host);
        // After StartTLS, ldapts no longer sees the plain socket close: remember it here.
        socket.once('close', () => socketClosed.add(client));
        return socket;
      }) as typeof net.connect,
    });
    if (this.#cfg.startTls && !ldaps) {
      try {
        await client.startTLS(this.#tls(url));
      } catch (err) {
        await client.unbind().catch(() => {});
        throw err;
      }
    }
    return client;
  }
}

const socketClosed = new WeakSet<Client>();

/** False once the client's connection is gone (also for StartTLS, where ldapts misses it). */
export const isUsable = (c: Client): boolean => c.isConnected && !socketClosed.has(c);

export class ServerList {
  readonly servers: ServerState[];

  constructor(urls: readonly string[]) {
    this.servers = urls.map((url) => ({ url, up: true }));
  }

  /** Up servers first (in configured order), then the down ones as a last resort. */
  order(): ServerState[] {
    return [...this.servers.filter((s) => s.up), ...this.servers.filter((s) => !s.up)];
  }

  markDown(s: ServerState, error: string, now = Date.now()): void {
    if (s.up) s.downSince = now;
    s.up = false;
    s.lastError = error;
  }

  markUp(s: ServerState): void {
    s.up = true;
    s.lastError = undefined;
    s.downSince = undefined;
  }

  anyDown(): boolean {
    return this.servers.some((s) => !s.up);
  }
}
