/**
 * The directory as the agent sees it: user binds on a small pool of reused connections (a rebind
 * on an open connection is several times faster than a new one), a separate service-account
 * connection for quick reads, fresh service connections for sync, servers tried in order with
 * health marking, and explicit deadlines everywhere.
 */
import type { AgentOutcome, DirectoryHealth } from '@gatehouse/protocol';
import type { Client } from 'ldapts';
import type { Logger } from 'pino';
import { type DirectoryConfig, readBindPassword } from '../config.ts';
import { DirectoryTimeoutError, mapBindError } from './outcome.ts';
import { Semaphore } from './semaphore.ts';
import { ClientFactory, ServerList, type ServerState } from './servers.ts';

export { mapBindError } from './outcome.ts';

export interface UserRef {
  dn: string;
  upn: string;
  onPremName?: string;
}

export interface BindResult {
  outcome: AgentOutcome;
  directoryCode: string;
  server?: string;
  directoryMs: number;
}

const withTimeout = async <T>(p: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => {
        onTimeout();
        reject(new DirectoryTimeoutError(what));
      },
      Math.max(1, ms),
    );
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
};

const first = (v: unknown): string | undefined => {
  const x = Array.isArray(v) ? v[0] : v;
  return x === undefined ? undefined : Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
};

/** pwdAccountLockedTime with this value means "locked by an administrator" (slapo-ppolicy(5)). */
const ADMIN_LOCK = '000001010000Z';

export class Directory {
  readonly cfg: DirectoryConfig;
  readonly servers: ServerList;
  readonly #factory: ClientFactory;
  readonly #log?: Logger;
  readonly #idle = new Map<string, Client[]>();
  readonly #pool: Semaphore;
  #svc?: { client: Client; server: ServerState };
  #svcQueue: Promise<unknown> = Promise.resolve();
  #health: DirectoryHealth = { ok: false, error: 'not probed yet' };
  #probeTimer?: NodeJS.Timeout;
  #closed = false;

  constructor(cfg: DirectoryConfig, opts: { log?: Logger; backgroundProbe?: boolean } = {}) {
    this.cfg = cfg;
    this.servers = new ServerList(cfg.urls);
    this.#factory = new ClientFactory(cfg);
    this.#log = opts.log;
    this.#pool = new Semaphore(cfg.poolSize);
    if (opts.backgroundProbe !== false) {
      this.#probeTimer = setInterval(() => void this.#probeDown(), cfg.probeIntervalMs);
      this.#probeTimer.unref();
    }
  }

  get health(): DirectoryHealth {
    return this.#health;
  }

  /** The name a user binds with: OpenLDAP the DN from sync, AD the UPN (else DOMAIN\name). */
  bindName(user: UserRef): string {
    return this.cfg.kind === 'openldap' ? user.dn : user.upn || user.onPremName || '';
  }

  #underBase(dn: string): boolean {
    const d = dn.toLowerCase().replace(/\s*,\s*/g, ',');
    return this.cfg.baseDns.some((b) => {
      const base = b.toLowerCase().replace(/\s*,\s*/g, ',');
      return d === base || d.endsWith(`,${base}`);
    });
  }

  /** Validates a password with a bind. Never throws; every failure is an outcome. */
  async validate(user: UserRef, password: string, opts: { timeoutMs?: number } = {}): Promise<BindResult> {
    const started = performance.now();
    const budget = Math.min(opts.timeoutMs ?? this.cfg.timeoutMs, this.cfg.timeoutMs);
    const deadline = started + budget;
    const name = this.bindName(user);
    // An empty password is an anonymous bind on many servers: it must never reach one.
    if (!password || !name) return { outcome: 'invalid_credentials', directoryCode: 'empty', directoryMs: 0 };
    if (this.cfg.kind === 'openldap' && !this.#underBase(name)) {
      return { outcome: 'invalid_credentials', directoryCode: 'outside-base', directoryMs: 0 };
    }
    if (!(await this.#pool.acquire(deadline))) {
      return { outcome: 'directory_timeout', directoryCode: 'queue', directoryMs: 0 };
    }
    let directoryMs = 0;
    let last: BindResult = { outcome: 'directory_unreachable', directoryCode: 'no-server', directoryMs: 0 };
    try {
      for (const server of this.servers.order()) {
        const remaining = deadline - performance.now();
        if (remaining <= 0) return { outcome: 'directory_timeout', directoryCode: 'timeout', directoryMs };
        const t0 = performance.now();
        let client: Client | undefined;
        try {
          client = this.#takeIdle(server.url) ?? (await this.#factory.open(server.url));
          const c = client;
          await withTimeout(c.bind(name, password), remaining, 'bind', () => void c.unbind().catch(() => {}));
          directoryMs += performance.now() - t0;
          this.#markUp(server);
          this.#putIdle(server, c);
          if (this.cfg.kind !== 'openldap')
            return { outcome: 'success', directoryCode: '0', server: server.url, directoryMs };
          // ppolicy: a must-change account binds successfully; only its entry tells.
          const t1 = performance.now();
          const state = await this.#policyState(name, deadline);
          directoryMs += performance.now() - t1;
          if (state === null)
            return {
              outcome: 'agent_error',
              directoryCode: '0/ppolicy:unreadable',
              server: server.url,
              directoryMs,
            };
          if (state.pwdReset) {
            return {
              outcome: 'password_must_change',
              directoryCode: '0/ppolicy:pwdReset',
              server: server.url,
              directoryMs,
            };
          }
          return { outcome: 'success', directoryCode: '0', server: server.url, directoryMs };
        } catch (err) {
          directoryMs += performance.now() - t0;
          const m = mapBindError(err);
          if (!m.serverFailure) {
            this.#markUp(server);
            if (client?.isConnected) this.#putIdle(server, client);
            else await client?.unbind().catch(() => {});
            let { outcome, directoryCode } = m;
            if (this.cfg.kind === 'openldap' && m.directoryCode === '49') {
              // Like AD's 775, a lockout is reported whatever the password; other states are not.
              const t1 = performance.now();
              const state = await this.#policyState(name, deadline);
              directoryMs += performance.now() - t1;
              if (state?.lockedTime && state.lockedTime !== ADMIN_LOCK) {
                outcome = 'locked_out';
                directoryCode = '49/ppolicy:locked';
              }
            }
            return { outcome, directoryCode, server: server.url, directoryMs };
          }
          await client?.unbind().catch(() => {});
          this.#markDown(server, m.directoryCode);
          last = { outcome: m.outcome, directoryCode: m.directoryCode, server: server.url, directoryMs };
        }
      }
      return last;
    } finally {
      this.#pool.release();
    }
  }

  /** Reads the ppolicy state attributes of `dn` with the service account; null when it cannot. */
  async #policyState(
    dn: string,
    deadline: number,
  ): Promise<{ pwdReset: boolean; lockedTime?: string } | null> {
    try {
      const entry = await this.serviceOp(
        (c) =>
          c
            .search(dn, { scope: 'base', attributes: ['pwdReset', 'pwdAccountLockedTime'] })
            .then((r) => r.searchEntries[0]),
        deadline - performance.now(),
      );
      if (!entry) return { pwdReset: false };
      return {
        pwdReset: first(entry.pwdReset)?.toUpperCase() === 'TRUE',
        lockedTime: first(entry.pwdAccountLockedTime),
      };
    } catch (err) {
      if ((err as { code?: unknown }).code === 32) return { pwdReset: false };
      this.#log?.warn({ err: (err as Error).message, dn }, 'cannot read ppolicy state');
      return null;
    }
  }

  /**
   * Runs `fn` on the shared service-account connection, one operation at a time, failing over to
   * the next server when the connection cannot be used.
   */
  serviceOp<T>(fn: (c: Client, server: string) => Promise<T>, timeoutMs = this.cfg.timeoutMs): Promise<T> {
    const run = async (): Promise<T> => {
      const deadline = performance.now() + Math.min(timeoutMs, this.cfg.timeoutMs);
      let lastErr: unknown = new Error('no directory server configured');
      for (let attempt = 0; attempt < this.servers.servers.length; attempt++) {
        if (!this.#svc?.client.isConnected) await this.#openService(deadline);
        const svc = this.#svc!;
        try {
          const c = svc.client;
          return await withTimeout(
            fn(c, svc.server.url),
            deadline - performance.now(),
            'service operation',
            () => {
              void c.unbind().catch(() => {});
            },
          );
        } catch (err) {
          const m = mapBindError(err);
          if (!m.serverFailure) throw err;
          lastErr = err;
          this.#markDown(svc.server, m.directoryCode);
          await svc.client.unbind().catch(() => {});
          this.#svc = undefined;
          if (deadline - performance.now() <= 0) break;
        }
      }
      throw lastErr;
    };
    const p = this.#svcQueue.then(run, run);
    this.#svcQueue = p.catch(() => {});
    return p;
  }

  async #openService(deadline: number): Promise<void> {
    const { client, server } = await this.#bindServiceSomewhere(deadline);
    this.#svc = { client, server };
  }

  /** A new client bound as the service account, on the first server that accepts it. */
  async #bindServiceSomewhere(deadline: number): Promise<{ client: Client; server: ServerState }> {
    let lastErr: unknown = new Error('no directory server configured');
    for (const server of this.servers.order()) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw new DirectoryTimeoutError('service bind');
      let client: Client | undefined;
      try {
        client = await this.#factory.open(server.url);
        const c = client;
        await withTimeout(
          c.bind(this.cfg.bindDn, readBindPassword(this.cfg)),
          remaining,
          'service bind',
          () => {
            void c.unbind().catch(() => {});
          },
        );
        this.#markUp(server);
        return { client, server };
      } catch (err) {
        await client?.unbind().catch(() => {});
        const m = mapBindError(err);
        if (!m.serverFailure) throw err;
        this.#markDown(server, m.directoryCode);
        lastErr = err;
      }
    }
    throw lastErr;
  }

  /** A dedicated service-account connection for long work (sync), closed afterwards. */
  async withServiceClient<T>(fn: (c: Client, server: string) => Promise<T>): Promise<T> {
    const { client, server } = await this.#bindServiceSomewhere(performance.now() + this.cfg.timeoutMs);
    try {
      return await fn(client, server.url);
    } finally {
      await client.unbind().catch(() => {});
    }
  }

  /** Binds as the service account now and reads the root DSE; updates and returns `health`. */
  async probe(timeoutMs = this.cfg.timeoutMs): Promise<DirectoryHealth> {
    try {
      const server = await this.serviceOp(async (c, url) => {
        await c.search('', { scope: 'base', attributes: ['1.1'] });
        return url;
      }, timeoutMs);
      this.#health = { ok: true, server };
    } catch (err) {
      const m = mapBindError(err);
      this.#health = { ok: false, error: `${m.outcome} (${m.directoryCode})` };
    }
    return this.#health;
  }

  /** Background check of servers marked down: any LDAP answer means it is back. */
  async #probeDown(): Promise<void> {
    for (const s of this.servers.servers.filter((x) => !x.up)) {
      let client: Client | undefined;
      try {
        client = await this.#factory.open(s.url);
        await withTimeout(
          client.search('', { scope: 'base', attributes: ['1.1'] }),
          this.cfg.timeoutMs,
          'probe',
          () => {},
        );
        this.#markUp(s);
      } catch (err) {
        if (!mapBindError(err).serverFailure) this.#markUp(s);
      } finally {
        await client?.unbind().catch(() => {});
      }
    }
  }

  #markUp(s: ServerState): void {
    if (!s.up) this.#log?.info({ server: s.url }, 'directory server is back');
    this.servers.markUp(s);
  }

  #markDown(s: ServerState, why: string): void {
    if (s.up) this.#log?.warn({ server: s.url, why }, 'directory server marked down');
    this.servers.markDown(s, why);
    for (const c of this.#idle.get(s.url) ?? []) void c.unbind().catch(() => {});
    this.#idle.delete(s.url);
  }

  /** An idle connection that is still open (a dropped one is not reopened: see ClientFactory). */
  #takeIdle(url: string): Client | undefined {
    const list = this.#idle.get(url);
    for (let c = list?.pop(); c; c = list?.pop()) {
      if (c.isConnected) return c;
      void c.unbind().catch(() => {});
    }
    return undefined;
  }

  #putIdle(s: ServerState, c: Client): void {
    if (this.#closed) {
      void c.unbind().catch(() => {});
      return;
    }
    const list = this.#idle.get(s.url) ?? [];
    list.push(c);
    this.#idle.set(s.url, list);
  }

  /** Number of user binds running now (for heartbeats). */
  get inFlight(): number {
    return this.#pool.busy;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#probeTimer);
    const all = [...this.#idle.values()].flat();
    this.#idle.clear();
    if (this.#svc) all.push(this.#svc.client);
    this.#svc = undefined;
    await Promise.all(all.map((c) => c.unbind().catch(() => {})));
  }
}
