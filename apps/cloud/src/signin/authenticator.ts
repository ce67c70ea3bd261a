/**
 * The sign-in path: home realm discovery, then the cloud hash (cloud-only accounts) or an agent
 * validation (synced users), smart lockout around it, and a sign-in log row for every attempt.
 * Nothing here reveals whether a user exists: an unknown name costs one scrypt verification and
 * answers exactly like a wrong password.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { catalog, type ErrorCode, type SignInOutcome } from '@gatehouse/protocol';
import { z } from 'zod';
import type { CloudContext, ValidationAnswer } from '../context.ts';
import { observeSignIn, type SignInCheck } from '../metrics/observe.ts';
import { getTenant, type Tenant } from '../store/tenants.ts';
import { findByLogin, getUser, type User, type UserRecord } from '../store/users.ts';
import { domainOf, parse } from '../store/util.ts';
import { type LockoutAttempt, type LockoutPolicy, noLockout } from './lockout.ts';
import { createSignInLog, type SignInLog } from './log.ts';
import { DUMMY_HASH, hashPassword, needsRehash, verifyPassword } from './password.ts';
import { createTimingMask, type TimingMask } from './timing-mask.ts';
import type { Authenticator, Realm, SignedInUser, SignInInput, SignInResult } from './types.ts';

export const SignInInputSchema = z.object({
  tenantId: z.string().min(1).max(128),
  username: z.string().max(1024),
  password: z.string().max(1024),
  method: z.enum(['browser', 'password_grant']),
  clientId: z.string().max(256).optional(),
  clientIp: z.string().max(64).optional(),
  deviceId: z.string().max(128).optional(),
});

export interface AuthenticatorService extends Authenticator {
  /** Waits for sign-in log rows still being committed (shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Drops cached tenant settings (after this process changed them; other nodes wait out the TTL). */
  invalidate(tenantId?: string): void;
}

export interface AuthenticatorOptions {
  lockout?: LockoutPolicy;
  signInLog?: SignInLog;
  timingMask?: TimingMask;
  /** How long tenant settings and federated domains are cached (default 1 s). */
  tenantCacheMs?: number;
}

interface TenantInfo {
  tenant: Tenant;
  /** Verified federated domains of the tenant and where they sign in. */
  federated: Map<string, string>;
}

const isOutcome = (v: unknown): v is SignInOutcome =>
  typeof v === 'string' && (v === 'success' || Object.hasOwn(catalog, v));

const toSignedInUser = (u: User): SignedInUser => ({
  id: u.id,
  tenantId: u.tenantId,
  upn: u.upn,
  displayName: u.displayName,
  mail: u.mail,
  source: u.source,
  roles: u.roles,
});

export const createAuthenticator = (
  ctx: CloudContext,
  options: AuthenticatorOptions = {},
): AuthenticatorService => {
  const lockout = options.lockout ?? noLockout;
  const mask = options.timingMask ?? createTimingMask();
  const signInLog = options.signInLog ?? createSignInLog(ctx.db, { log: ctx.log });
  const ttl = options.tenantCacheMs ?? 1000;
  const cache = new Map<string, { at: number; info: Promise<TenantInfo> }>();

  const loadTenant = async (tenantId: string): Promise<TenantInfo> => {
    const [tenant, domains] = await Promise.all([
      getTenant(ctx.db, tenantId),
      ctx.db
        .selectFrom('domains')
        .select(['name', 'federation_url'])
        .where('tenant_id', '=', tenantId)
        .where('kind', '=', 'federated')
        .where('verified', '=', 1)
        .execute(),
    ]);
    return {
      tenant,
      federated: new Map(domains.flatMap((d) => (d.federation_url ? [[d.name, d.federation_url]] : []))),
    };
  };

  // The promise is cached, so a burst of sign-ins for one tenant makes one query, not one each.
  const tenantInfo = (tenantId: string): Promise<TenantInfo> => {
    const now = performance.now();
    const hit = cache.get(tenantId);
    if (hit && now - hit.at < ttl) return hit.info;
    const info = loadTenant(tenantId);
    cache.set(tenantId, { at: now, info });
    if (cache.size > 10_000) cache.delete(cache.keys().next().value!);
    return info;
  };

  const checkCloudPassword = async (user: UserRecord, password: string): Promise<boolean> => {
    if (!user.passwordHash) {
      await verifyPassword(password, DUMMY_HASH);
      return false;
    }
    const ok = await verifyPassword(password, user.passwordHash);
    if (ok && needsRehash(user.passwordHash)) {
      const hash = await hashPassword(password);
      await ctx.db.updateTable('users').set({ password_hash: hash }).where('id', '=', user.id).execute();
    }
    return ok;
  };

  const validateOnPremises = async (
    user: UserRecord,
    password: string,
    requestId: string,
    deadline: number,
  ): Promise<ValidationAnswer> => {
    try {
      const answer = await ctx.dispatcher.validate({
        tenantId: user.tenantId,
        requestId,
        user: {
          upn: user.upn,
          dn: user.onPremDn ?? '',
          anchor: user.sourceAnchor ?? '',
          ...(user.onPremName ? { onPremName: user.onPremName } : {}),
        },
        password,
        deadline,
      });
      return isOutcome(answer.outcome) ? answer : { ...answer, outcome: 'invalid_response' };
    } catch (err) {
      // The dispatcher promises not to throw; if it does, it is an infrastructure failure.
      ctx.log.error({ err, requestId }, 'dispatcher threw');
      return { outcome: 'agent_error' };
    }
  };

  return {
    async discover(tenantId, username): Promise<Realm> {
      const { federated } = await tenantInfo(parse(z.string().min(1).max(128), tenantId));
      const redirect = federated.get(domainOf(String(username)));
      return redirect ? { kind: 'federated', redirect } : { kind: 'password' };
    },

    async authenticate(input: SignInInput): Promise<SignInResult> {
      const started = performance.now();
      const at = ctx.now();
      const requestId = randomUUID();
      const i = parse(SignInInputSchema, input);
      const { tenant, federated } = await tenantInfo(i.tenantId);
      const login = i.username.trim().toLowerCase();
      let user: UserRecord | null = null;
      let answer: ValidationAnswer | undefined;
      let check: SignInCheck = 'none';

      // The row is committed before any answer: no tokens for a sign-in the audit log lacks (log.ts).
      const finish = async (outcome: SignInOutcome): Promise<SignInResult> => {
        const written = signInLog.write({
          tenant_id: tenant.id,
          at,
          request_id: requestId,
          upn: (user?.upn ?? login).slice(0, 256),
          user_id: user?.id ?? null,
          method: i.method,
          outcome,
          client_id: i.clientId ?? null,
          client_ip: i.clientIp ?? null,
          agent_id: answer?.agentId ?? null,
          server: answer?.server ?? null,
          directory_code: answer?.directoryCode ?? null,
          agent_ms: answer?.agentMs ?? null,
          directory_ms: answer?.directoryMs ?? null,
          total_ms: performance.now() - started,
        });
        const logged = await written.then(
          () => true,
          () => false,
        );
        // One event per sign-in; the request logger adds reqId. Only ids, codes and timings: never
        // the password or anything derived from it.
        (input.log ?? ctx.log).info(
          {
            signInId: requestId,
            tenantId: tenant.id,
            method: i.method,
            outcome,
            userId: user?.id ?? null,
            clientId: i.clientId ?? null,
            agentId: answer?.agentId ?? null,
            directoryCode: answer?.directoryCode ?? null,
            agentMs: answer?.agentMs ?? null,
            directoryMs: answer?.directoryMs ?? null,
            totalMs: Math.round((performance.now() - started) * 100) / 100,
            ...(logged ? {} : { signInLogWritten: false }),
          },
          'sign-in',
        );
        observeSignIn({
          method: i.method,
          check,
          // What the client is told: a success the log could not record is not one.
          outcome: outcome === 'success' && !(user && logged) ? 'internal_error' : outcome,
          totalMs: performance.now() - started,
          agentMs: answer?.agentMs,
          directoryMs: answer?.directoryMs,
        });
        if (outcome === 'success' && user && logged)
          return { ok: true, user: toSignedInUser(user), requestId };
        return {
          ok: false,
          code: (outcome === 'success' ? 'internal_error' : outcome) as ErrorCode,
          requestId,
        };
      };

      // Policy first: a blocked legacy client costs nothing, not even a lookup.
      if (i.method === 'password_grant' && !tenant.legacyAuth) return finish('legacy_auth_blocked');

      if (login.length > 0 && login.length <= 256)
        user = await findByLogin(ctx.db, tenant.id, login, tenant.loginAttribute);
      const deadline = ctx.now() + ctx.config.agentTimeoutMs;
      const attempt: LockoutAttempt = {
        tenantId: tenant.id,
        login,
        userId: user?.id ?? null,
        password: i.password,
        origin: { ip: i.clientIp, deviceId: i.deviceId },
        settings: tenant.effectiveLockout,
        deadline,
      };
      const decision = await lockout.check(attempt);
      // Answers that need no real check take as long as real wrong-password answers (timing-mask.ts).
      const fakeCheck = async () => {
        if (!(await mask.hold(tenant.id, performance.now() - started)))
          await verifyPassword(i.password, DUMMY_HASH);
      };
      // A fast locked_out would tell a locked account from a wrong password, and so which names exist.
      if (decision.kind === 'locked') {
        await fakeCheck();
        return finish('locked_out');
      }
      if (decision.kind === 'repeat') {
        await fakeCheck();
        return finish('invalid_credentials');
      }

      let outcome: SignInOutcome;
      if (!user || i.password.length === 0) {
        // An empty password would be an anonymous bind on premises: never sent.
        await fakeCheck();
        outcome = 'invalid_credentials';
      } else if (user.source === 'cloud') {
        check = 'cloud';
        const ok = await checkCloudPassword(user, i.password);
        outcome = !ok ? 'invalid_credentials' : user.enabled ? 'success' : 'account_disabled';
      } else if (!tenant.ptaEnabled) {
        outcome = 'passthrough_disabled';
      } else if (federated.has(domainOf(user.upn))) {
        outcome = 'federated_user';
      } else {
        // Even a user disabled in the cloud copy goes to the directory: only the right password may
        // learn the account's state, and the directory is the one that knows whether it is right.
        check = 'agent';
        answer = await validateOnPremises(user, i.password, requestId, deadline);
        outcome = answer.outcome === 'success' && !user.enabled ? 'account_disabled' : answer.outcome;
      }

      if (outcome === 'invalid_credentials' && user && i.password.length > 0)
        mask.record(tenant.id, performance.now() - started);
      if (outcome === 'success') await lockout.recordSuccess(attempt, decision.ticket);
      else await lockout.recordFailure(attempt, decision.ticket, outcome);
      return finish(outcome);
    },

    async findUser(tenantId, userId) {
      const u = await getUser(ctx.db, tenantId, userId);
      return u?.enabled ? toSignedInUser(u) : null;
    },

    flush: () => signInLog.flush(),
    close: () => signInLog.close(),
    invalidate(tenantId) {
      if (tenantId === undefined) cache.clear();
      else cache.delete(tenantId);
    },
  };
};
