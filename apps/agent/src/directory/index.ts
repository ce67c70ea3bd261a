/**
 * The directory as the agent sees it: user binds on their own pool of reused connections (a rebind
 * on an open connection is several times faster than a new one), service-account searches on a
 * second pool, fresh service connections for sync, servers tried in order with health marking,
 * and explicit deadlines everywhere. A dead server costs one connect timeout, then is skipped
 * until the background probe sees it answer again.
 */
import type { AgentOutcome, DirectoryHealth, DirectoryLockoutPolicy } from '@gatehouse/protocol';
import type { Client } from 'ldapts';
import type { Logger } from 'pino';
import { type DirectoryConfig, readBindPassword } from '../config.ts';
import { close, withTimeout } from './deadline.ts';
import { DirectoryTimeoutError, mapBindError } from './outcome.ts';
import { readLockoutPolicy } from './policy.ts';
import { ConnectionPool } from './pool.ts';
import { controlVerdict, lockedOutcome, policyControl, STATE_ATTRIBUTES } from './ppolicy.ts';
import { ClientFactory, ServerList, type ServerState } from './servers.ts';
import { FailureTimingFloor } from './timing.ts';

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
  /** The bind operation alone (no connect, no state read), when the directory answered one. */
  bindMs?: number;
}

const first = (v: unknown): string | undefined => {
  const x = Array.isArray(v) ? v[0] : v;
  return x === undefined ? undefined : Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
};

export class Directory {
  readonly cfg: DirectoryConfig;
  readonly servers: ServerList;
  readonly #factory: ClientFactory;
  readonly #log?: Logger;
  readonly #users: ConnectionPool;
  readonly #service: ConnectionPool;
  readonly #floor: FailureTimingFloor;
  #health: DirectoryHealth = { ok: false, error: 'not probed yet' };
  #lockoutPolicy?: DirectoryLockoutPolicy;
  #lockoutPolicyAt = Number.NEGATIVE_INFINITY;
  #probeTimer?: NodeJS.Timeout;

  constructor(cfg: DirectoryConfig, opts: { log?: Logger; backgroundProbe?: boolean } = {}) {
    this.cfg = cfg;
    this.servers = new ServerList(cfg.urls);
    this.#factory = new ClientFactory(cfg);
    this.#log = opts.log;
    this.#users = new ConnectionPool(cfg.poolSize);
    this.#service = new ConnectionPool(cfg.servicePoolSize);
    this.#floor = new FailureTimingFloor(cfg.failureTimingCapMs);
    if (opts.backgroundProbe !== false) {
      this.#probeTimer = setInterval(() => void this.#probeDown(), cfg.probeIntervalMs);
      this.#probeTimer.unref();
    }
  }

  get health(): DirectoryHealth {
    return this.#lockoutPolicy ? { ...this.#health, lockoutPolicy: this.#lockoutPolicy } : this.#health;
  }

  /**
   * The name a user binds with: OpenLDAP the DN from sync; AD DOMAIN\name, else the UPN.
   * DOMAIN\name survives what a sync may not have caught up with yet: a changed UPN or a move to
   * another OU.
   */
  bindName(user: UserRef): string {
    return this.cfg.kind === 'openldap' ? user.dn : user.onPremName || user.upn || '';
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
    const deadline = started + Math.min(opts.timeoutMs ?? this.cfg.timeoutMs, this.cfg.timeoutMs);
    const r = await this.#validate(user, password, deadline);
    // Binds the directory answered feed the floor; wrong names and passwords wait for it.
    if (r.bindMs !== undefined) this.#floor.observe(r.bindMs);
    if (r.outcome === 'invalid_credentials') await this.#floor.hold(started, deadline);
    return r;
  }

  async #validate(user: UserRef, password: string, deadline: number): Promise<BindResult> {
    const name = this.bindName(user);
    // An empty password is an anonymous bind on many servers: it must never reach one.
    if (!password || !name) return { outcome: 'invalid_credentials', directoryCode: 'empty', directoryMs: 0 };
    if (this.cfg.kind === 'openldap' && !this.#underBase(name)) {
      return { outcome: 'invalid_credentials', directoryCode: 'outside-base', directoryMs: 0 };
    }
    if (!(await this.#users.acquire(deadline))) {
      return { outcome: 'directory_timeout', directoryCode: 'queue', directoryMs: 0 };
    }
    let directoryMs = 0;
    let last: BindResult = { outcome: 'directory_unreachable', directoryCode: 'no-server', directoryMs: 0 };
    try {
      for (const server of this.servers.order()) {
        // A pooled connection may have died quietly (server restarted): retry once on a fresh one
        // before blaming the server.
        for (let fresh = false; ; fresh = true) {
          const remaining = deadline - performance.now();
          if (remaining <= 0) return { outcome: 'directory_timeout', directoryCode: 'timeout', directoryMs };
          const t0 = performance.now();
          let client = fresh ? undefined : this.#users.take(server.url);
          const reused = client !== undefined;
          const ctl = this.cfg.kind === 'openldap' ? policyControl() : undefined;
          let tBind = Number.NaN;
          try {
            client ??= await this.#open(server.url, remaining);
            const c = client;
            tBind = performance.now();
            await withTimeout(c.bind(name, password, ctl), deadline - performance.now(), 'bind', () =>
              close(c),
            );
            const bindMs = performance.now() - tBind;
            directoryMs += performance.now() - t0;
            this.#markUp(server);
            this.#users.put(server.url, c);
            const v = ctl ? controlVerdict(true, ctl) : null;
            const r = v && v !== 'locked' ? v : { outcome: 'success' as const, directoryCode: '0' };
            return { ...r, server: server.url, directoryMs, bindMs };
          } catch (err) {
            const bindMs = performance.now() - tBind;
            directoryMs += performance.now() - t0;
            const m = mapBindError(err);
            if (m.serverFailure) {
              close(client);
              if (reused && m.directoryCode !== 'timeout') continue;
              this.#markDown(server, m.directoryCode);
              last = { outcome: m.outcome, directoryCode: m.directoryCode, server: server.url, directoryMs };
              break;
            }
            this.#markUp(server);
            if (client) this.#users.put(server.url, client);
            let r: { outcome: AgentOutcome; directoryCode: string } = m;
            const v = ctl && m.directoryCode === '49' ? controlVerdict(false, ctl) : null;
            if (v === 'locked') {
              const t1 = performance.now();
              r = lockedOutcome(await this.#readState(name, deadline));
              directoryMs += performance.now() - t1;
            } else if (v) r = v;
            const answered = Number.isNaN(bindMs) ? {} : { bindMs };
            return {
              outcome: r.outcome,
              directoryCode: r.directoryCode,
              server: server.url,
              directoryMs,
              ...answered,
            };
          }
        }
      }
      return last;
    } finally {
      this.#users.release();
    }
  }

  /** The ppolicy attributes of a locked entry, read with the service account (undefined when it cannot). */
  async #readState(dn: string, deadline: number): Promise<Record<string, string | undefined> | undefined> {
    try {
      const e = await this.serviceOp(
        (c) => c.search(dn, { scope: 'base', attributes: STATE_ATTRIBUTES }).then((r) => r.searchEntries[0]),
        deadline - performance.now(),
      );
      return e && Object.fromEntries(STATE_ATTRIBUTES.map((a) => [a, first(e[a])]));
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message, dn }, 'cannot read ppolicy state');
      return undefined;
    }
  }

  /** A connected client (StartTLS done), within `ms`; one that connects too late is closed. */
  #open(url: string, ms: number): Promise<Client> {
    return withTimeout(this.#factory.open(url), ms, 'connect', () => {}, close);
  }

  /** A new client bound as the service account, within `ms`. */
  async #openService(url: string, ms: number): Promise<Client> {
    const deadline = performance.now() + ms;
    const c = await this.#open(url, ms);
    try {
      await withTimeout(
        c.bind(this.cfg.bindDn, readBindPassword(this.cfg)),
        deadline - performance.now(),
        'service bind',
        () => close(c),
      );
      return c;
    } catch (err) {
      close(c);
      throw err;
    }
  }

  /**
   * Runs `fn` on a pooled service-account connection, failing over to the next server when the
   * server cannot be used. Errors that are answers (noSuchObject...) are thrown to the caller.
   */
  async serviceOp<T>(
    fn: (c: Client, server: string) => Promise<T>,
    timeoutMs = this.cfg.timeoutMs,
  ): Promise<T> {
    const deadline = performance.now() + Math.min(timeoutMs, this.cfg.timeoutMs);
    if (!(await this.#service.acquire(deadline))) throw new DirectoryTimeoutError('service pool');
    let lastErr: unknown = new Error('no directory server configured');
    try {
      for (const server of this.servers.order()) {
        for (let fresh = false; ; fresh = true) {
          const remaining = deadline - performance.now();
          if (remaining <= 0) throw new DirectoryTimeoutError('service operation');
          let client = fresh ? undefined : this.#service.take(server.url);
          const reused = client !== undefined;
          try {
            client ??= await this.#openService(server.url, remaining);
            const c = client;
            const r = await withTimeout(
              fn(c, server.url),
              deadline - performance.now(),
              'service operation',
              () => close(c),
            );
            this.#markUp(server);
            this.#service.put(server.url, c);
            return r;
          } catch (err) {
            const m = mapBindError(err);
            if (!m.serverFailure) {
              if (client) this.#service.put(server.url, client);
              throw err;
            }
            close(client);
            if (reused && m.directoryCode !== 'timeout') continue;
            this.#markDown(server, m.directoryCode);
            lastErr = err;
            break;
          }
        }
      }
      throw lastErr;
    } finally {
      this.#service.release();
    }
  }

  /**
   * Another service-account connection to `url` for the same long work, or undefined when it
   * cannot be had; the caller closes it.
   */
  async extraServiceClient(url: string): Promise<Client | undefined> {
    return this.#openService(url, this.cfg.timeoutMs).catch(() => undefined);
  }

  /** A dedicated service-account connection for long work (sync), closed afterwards. */
  async withServiceClient<T>(fn: (c: Client, server: string) => Promise<T>): Promise<T> {
    const deadline = performance.now() + this.cfg.timeoutMs;
    let lastErr: unknown = new Error('no directory server configured');
    for (const server of this.servers.order()) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw new DirectoryTimeoutError('service bind');
      let client: Client;
      try {
        client = await this.#openService(server.url, remaining);
      } catch (err) {
        const m = mapBindError(err);
        if (!m.serverFailure) throw err;
        this.#markDown(server, m.directoryCode);
        lastErr = err;
        continue;
      }
      this.#markUp(server);
      try {
        return await fn(client, server.url);
      } finally {
        close(client);
      }
    }
    throw lastErr;
  }

  /**
   * Binds as the service account and reads the root DSE; updates and returns `health`. The
   * directory's lockout policy is read again when older than `lockoutPolicyRefreshMs`.
   */
  async probe(timeoutMs = this.cfg.timeoutMs): Promise<DirectoryHealth> {
    try {
      const server = await this.serviceOp(async (c, url) => {
        await c.search('', { scope: 'base', attributes: ['1.1'] });
        return url;
      }, timeoutMs);
      this.#health = { ok: true, server };
      if (performance.now() - this.#lockoutPolicyAt >= this.cfg.lockoutPolicyRefreshMs) {
        await this.refreshLockoutPolicy(timeoutMs).catch(() => {});
      }
    } catch (err) {
      const m = mapBindError(err);
      this.#health = { ok: false, error: `${m.outcome} (${m.directoryCode})` };
    }
    return this.health;
  }

  /** Reads the directory's lockout policy now (the last known one is kept when this fails). */
  async refreshLockoutPolicy(timeoutMs = this.cfg.timeoutMs): Promise<DirectoryLockoutPolicy> {
    // A policy the service account may not read is retried at the refresh interval, not per heartbeat.
    this.#lockoutPolicyAt = performance.now();
    try {
      const p = await this.serviceOp((c) => readLockoutPolicy(c, this.cfg), timeoutMs);
      if (JSON.stringify(p) !== JSON.stringify(this.#lockoutPolicy))
        this.#log?.info({ lockoutPolicy: p }, 'directory lockout policy');
      this.#lockoutPolicy = p;
      return p;
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message }, 'cannot read the directory lockout policy');
      throw err;
    }
  }

  get lockoutPolicy(): DirectoryLockoutPolicy | undefined {
    return this.#lockoutPolicy;
  }

  /** Background check of servers marked down: any LDAP answer means it is back. */
  async #probeDown(): Promise<void> {
    for (const s of this.servers.servers.filter((x) => !x.up)) {
      let client: Client | undefined;
      try {
        client = await this.#open(s.url, this.cfg.timeoutMs);
        const c = client;
        await withTimeout(
          c.search('', { scope: 'base', attributes: ['1.1'] }),
          this.cfg.timeoutMs,
          'probe',
          () => close(c),
        );
        this.#markUp(s);
      } catch (err) {
        if (!mapBindError(err).serverFailure) this.#markUp(s);
      } finally {
        close(client);
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
    this.#users.drop(s.url);
    this.#service.drop(s.url);
  }

  /** Number of user binds running or waiting now (for heartbeats). */
  get inFlight(): number {
    return this.#users.busy;
  }

  async close(): Promise<void> {
    clearInterval(this.#probeTimer);
    await Promise.all([this.#users.close(), this.#service.close()]);
  }
}
