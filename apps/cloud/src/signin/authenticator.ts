/**
 * The sign-in, as the steps of docs/architecture.md ("The sign-in, step by step"), each a named
 * function below in the order it runs. `signIn` runs all but the first, the page's (`discover`):
 *
 *   realmOfDomain         the sign-in page's discovery, before the password: federated or not
 *   receive               the input, parsed; the tenant's settings and federated domains
 *   isBlockedLegacyClient a password grant the tenant does not allow (before any lookup)
 *   discoverHomeRealm     the user, and where their password is checked: cloud hash, agent, nowhere
 *   admitThroughLockout   smart lockout, before any password work
 *   checkPassword         verifyCloudHash, or sealAndDispatch to an agent and validateAnswer;
 *                         an unknown name with just-in-time users on: checkJustInTime (jit.ts)
 *   recordAttempt         lockout and the timing mask learn the outcome
 *   logSignIn             the sign-in log row, committed
 *   answer                the result: only a success whose row is committed lets tokens be issued
 *
 * Nothing here reveals whether a user exists: an unknown name costs one scrypt verification and
 * answers exactly like a wrong password.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { catalog, type ErrorCode, type SignInOutcome, TenantId } from '@gatehouse/protocol';
import type { z } from 'zod';
import type { CloudContext } from '../context.ts';
import type { GroupCommit } from '../db/group-commit.ts';
import { observeSignIn, type SignInCheck } from '../metrics/observe.ts';
import { DUMMY_HASH, hashPassword, needsRehash, verifyPassword } from '../store/password.ts';
import type { Tenant } from '../store/tenants.ts';
import { findByLogin, getUser, replacePasswordHash, type UserRecord } from '../store/users.ts';
import { domainOf, parse } from '../store/util.ts';
import { mayLookUp, signInJustInTime } from './jit.ts';
import { type LockoutAttempt, type LockoutPolicy, noLockout } from './lockout.ts';
import { createSignInLog, type SignInLog } from './log.ts';
import { createTenantCache, type TenantCache } from './tenant-cache.ts';
import { createTimingMask, type TimingMask } from './timing-mask.ts';
import {
  type Authenticator,
  type Dispatcher,
  type Realm,
  type SignInInput,
  SignInInputSchema,
  type SignInResult,
  toSignedInUser,
  type ValidationAnswer,
} from './types.ts';

export interface AuthenticatorService extends Authenticator {
  /** Waits for sign-in log rows still being committed (shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Drops cached tenant settings (after this process changed them; other nodes wait out the TTL). */
  invalidate(tenantId?: string): void;
}

export interface AuthenticatorOptions {
  /** Carries validations to the tenant's agents (server.ts composes it); without one, no agent is
   * ever connected and a synced user's sign-in answers no_agent. */
  dispatcher?: Dispatcher;
  lockout?: LockoutPolicy;
  signInLog?: SignInLog;
  /** The group commit the sign-in log's rows join (db/group-commit.ts); default: their own. */
  writes?: GroupCommit;
  timingMask?: TimingMask;
  /** How long tenant settings and federated domains are cached (default 1 s). */
  tenantCacheMs?: number;
}

/** What every step may use; one per authenticator. */
interface Pipeline {
  ctx: CloudContext;
  dispatcher: Dispatcher;
  lockout: LockoutPolicy;
  mask: TimingMask;
  signInLog: SignInLog;
  tenants: TenantCache;
}

/** One sign-in in flight. The steps fill in what they learn; the log row is made of it. */
interface SignIn {
  input: z.output<typeof SignInInputSchema>;
  /** The request's logger if it came with one, else the cloud's. */
  log: NonNullable<SignInInput['log']>;
  requestId: string;
  /** performance.now() at the start, for durations. */
  started: number;
  /** ctx.now() at the start, for the log row. */
  at: number;
  tenant: Tenant;
  federated: Map<string, string>;
  /** The name as typed, trimmed and lower-cased. */
  login: string;
  user: UserRecord | null;
  /** Where the password was checked (a metric label). */
  check: SignInCheck;
  /** The agent's answer, when one was asked. */
  agentAnswer?: ValidationAnswer;
  /** Answered without a real check: held like a wrong password once its own work is done. */
  masked?: boolean;
}

/** Where a sign-in's password is checked, by who the user is. */
type HomeRealm =
  /** No such user, or an empty password: answered like a wrong password. */
  | { kind: 'unknown' }
  | { kind: 'cloud'; user: UserRecord }
  | { kind: 'synced'; user: UserRecord }
  /** A synced user the tenant does not check here. */
  | { kind: 'elsewhere'; outcome: 'passthrough_disabled' | 'federated_user' };

type Admission =
  | { kind: 'admit'; attempt: LockoutAttempt; ticket?: unknown }
  | { kind: 'refused'; outcome: 'locked_out' | 'invalid_credentials' };

/** The whole sign-in. Never throws for a credential or infrastructure outcome (types.ts). */
async function signIn(p: Pipeline, input: SignInInput): Promise<SignInResult> {
  const s = await receive(p, input);
  const outcome = await decide(p, s);
  const logged = await logSignIn(p, s, outcome);
  return answer(s, outcome, logged);
}

/** From the user name to an outcome: steps 2 to 6 of the design. */
async function decide(p: Pipeline, s: SignIn): Promise<SignInOutcome> {
  if (isBlockedLegacyClient(s)) return 'legacy_auth_blocked';
  const realm = await discoverHomeRealm(p, s);
  const admission = await admitThroughLockout(p, s);
  const outcome =
    admission.kind === 'refused' ? admission.outcome : await checkAndRecord(p, s, realm, admission);
  // Last, so that the hold covers what each kind of answer did before it (a lockout write or not).
  if (s.masked) await holdLikeAWrongPassword(p, s);
  return outcome;
}

async function checkAndRecord(
  p: Pipeline,
  s: SignIn,
  realm: HomeRealm,
  admitted: Extract<Admission, { kind: 'admit' }>,
): Promise<SignInOutcome> {
  const outcome = await checkPassword(p, s, realm, admitted.attempt.deadline);
  await recordAttempt(p, s, admitted, outcome);
  return outcome;
}

/** The sign-in page's discovery, by the name's domain alone: a federated domain signs in elsewhere. */
async function realmOfDomain(p: Pipeline, tenantId: string, username: string): Promise<Realm> {
  const { federated } = await p.tenants.get(parse(TenantId, tenantId));
  const redirect = federated.get(domainOf(String(username)));
  return redirect ? { kind: 'federated', redirect } : { kind: 'password' };
}

async function receive(p: Pipeline, input: SignInInput): Promise<SignIn> {
  const started = performance.now();
  const at = p.ctx.now();
  const requestId = randomUUID();
  const i = parse(SignInInputSchema, input);
  const { tenant, federated } = await p.tenants.get(i.tenantId);
  return {
    input: i,
    log: input.log ?? p.ctx.log,
    requestId,
    started,
    at,
    tenant,
    federated,
    login: i.username.trim().toLowerCase(),
    user: null,
    check: 'none',
  };
}

/** Policy first: a blocked legacy client costs nothing, not even a lookup. */
function isBlockedLegacyClient(s: SignIn): boolean {
  return s.input.method === 'password_grant' && !s.tenant.legacyAuth;
}

/** The user the name denotes, and where their password is checked. */
async function discoverHomeRealm(p: Pipeline, s: SignIn): Promise<HomeRealm> {
  const { login, tenant } = s;
  if (login.length > 0 && login.length <= 256)
    s.user = await findByLogin(p.ctx.db, tenant.id, login, tenant.loginAttribute);
  const user = s.user;
  // An empty password would be an anonymous bind on premises: never sent.
  if (!user || s.input.password.length === 0) return { kind: 'unknown' };
  if (user.source === 'cloud') return { kind: 'cloud', user };
  if (!tenant.ptaEnabled) return { kind: 'elsewhere', outcome: 'passthrough_disabled' };
  if (s.federated.has(domainOf(user.upn))) return { kind: 'elsewhere', outcome: 'federated_user' };
  return { kind: 'synced', user };
}

/** Smart lockout, consulted before any password work: a locked-out user costs no directory bind. */
async function admitThroughLockout(p: Pipeline, s: SignIn): Promise<Admission> {
  const attempt: LockoutAttempt = {
    tenantId: s.tenant.id,
    login: s.login,
    userId: s.user?.id ?? null,
    password: s.input.password,
    origin: { ip: s.input.clientIp, deviceId: s.input.deviceId },
    settings: s.tenant.effectiveLockout,
    deadline: p.ctx.now() + p.ctx.config.agentTimeoutMs,
  };
  const decision = await p.lockout.check(attempt);
  if (decision.kind === 'admit') return { kind: 'admit', attempt, ticket: decision.ticket };
  // A fast locked_out would tell a locked account from a wrong password, and so which names exist.
  s.masked = true;
  return { kind: 'refused', outcome: decision.kind === 'locked' ? 'locked_out' : 'invalid_credentials' };
}

/** Answers that need no real check take as long as real wrong-password answers (timing-mask.ts). */
async function holdLikeAWrongPassword(p: Pipeline, s: SignIn): Promise<void> {
  if (!(await p.mask.hold(s.tenant.id, performance.now() - s.started)))
    await verifyPassword(s.input.password, DUMMY_HASH);
}

async function checkPassword(
  p: Pipeline,
  s: SignIn,
  realm: HomeRealm,
  deadline: number,
): Promise<SignInOutcome> {
  switch (realm.kind) {
    case 'unknown':
      if (mayLookUp(s.tenant, s.login, s.input.password)) return checkJustInTime(p, s, deadline);
      s.masked = true;
      return 'invalid_credentials';
    case 'elsewhere':
      return realm.outcome;
    case 'cloud':
      s.check = 'cloud';
      return verifyCloudHash(p, realm.user, s.input.password);
    case 'synced':
      // Even a user disabled in the cloud copy goes to the directory: only the right password may
      // learn the account's state, and the directory is the one that knows whether it is right.
      s.check = 'agent';
      s.agentAnswer = await sealAndDispatch(p, s, realm.user, deadline);
      return validateAnswer(realm.user, s.agentAnswer);
  }
}

/** A name not synced, on a tenant with just-in-time users: an agent looks it up (jit.ts). */
async function checkJustInTime(p: Pipeline, s: SignIn, deadline: number): Promise<SignInOutcome> {
  s.check = 'agent';
  const r = await signInJustInTime(p.ctx, p.dispatcher, s, deadline);
  s.agentAnswer = r.answer;
  if (r.user) s.user = r.user;
  return r.outcome;
}

/** A cloud-only user's scrypt hash, upgraded in place when made with older parameters. */
async function verifyCloudHash(p: Pipeline, user: UserRecord, password: string): Promise<SignInOutcome> {
  let ok: boolean;
  if (!user.passwordHash) {
    await verifyPassword(password, DUMMY_HASH);
    ok = false;
  } else {
    ok = await verifyPassword(password, user.passwordHash);
    if (ok && needsRehash(user.passwordHash))
      await replacePasswordHash(p.ctx.db, user.id, await hashPassword(password));
  }
  return !ok ? 'invalid_credentials' : user.enabled ? 'success' : 'account_disabled';
}

/** Hands the password to the dispatcher, which picks an agent, seals it to that agent's key
 * (HPKE) and sends it, failing over within the deadline (gateway/). */
async function sealAndDispatch(
  p: Pipeline,
  s: SignIn,
  user: UserRecord,
  deadline: number,
): Promise<ValidationAnswer> {
  try {
    return await p.dispatcher.validate({
      kind: 'cleartext',
      tenantId: user.tenantId,
      requestId: s.requestId,
      user: {
        upn: user.upn,
        dn: user.onPremDn ?? '',
        anchor: user.sourceAnchor ?? '',
        ...(user.onPremName ? { onPremName: user.onPremName } : {}),
      },
      password: s.input.password,
      deadline,
    });
  } catch (err) {
    // The dispatcher promises not to throw; if it does, it is an infrastructure failure.
    p.ctx.log.error({ err, requestId: s.requestId }, 'dispatcher threw');
    return { outcome: 'agent_error' };
  }
}

const isOutcome = (v: unknown): v is SignInOutcome =>
  typeof v === 'string' && (v === 'success' || Object.hasOwn(catalog, v));

/** The agent's answer as a catalog outcome; a right password of a user disabled here is refused. */
function validateAnswer(user: UserRecord, agentAnswer: ValidationAnswer): SignInOutcome {
  const outcome = isOutcome(agentAnswer.outcome) ? agentAnswer.outcome : 'invalid_response';
  return outcome === 'success' && !user.enabled ? 'account_disabled' : outcome;
}

/** Lockout settles the admitted attempt; a real wrong password teaches the mask its cost. */
async function recordAttempt(
  p: Pipeline,
  s: SignIn,
  admitted: Extract<Admission, { kind: 'admit' }>,
  outcome: SignInOutcome,
): Promise<void> {
  if (outcome === 'success') await p.lockout.recordSuccess(admitted.attempt, admitted.ticket);
  else await p.lockout.recordFailure(admitted.attempt, admitted.ticket, outcome);
  // Measured to the same point the held answers are held to: after the lockout write.
  if (outcome === 'invalid_credentials' && s.user && !s.masked && s.input.password.length > 0)
    p.mask.record(s.tenant.id, performance.now() - s.started);
}

/**
 * Commits the sign-in log row and says whether it was: no tokens for a sign-in the audit log lacks
 * (log.ts). Then one log event per sign-in (the request logger adds reqId): only ids, codes and
 * timings, never the password or anything derived from it.
 */
async function logSignIn(p: Pipeline, s: SignIn, outcome: SignInOutcome): Promise<boolean> {
  const { input: i, user, agentAnswer: a } = s;
  const logged = await p.signInLog
    .write({
      tenant_id: s.tenant.id,
      at: s.at,
      request_id: s.requestId,
      upn: (user?.upn ?? s.login).slice(0, 256),
      user_id: user?.id ?? null,
      method: i.method,
      outcome,
      client_id: i.clientId ?? null,
      client_ip: i.clientIp ?? null,
      agent_id: a?.agentId ?? null,
      server: a?.server ?? null,
      directory_code: a?.directoryCode ?? null,
      agent_ms: a?.agentMs ?? null,
      directory_ms: a?.directoryMs ?? null,
      total_ms: performance.now() - s.started,
    })
    .then(
      () => true,
      () => false,
    );
  s.log.info(
    {
      signInId: s.requestId,
      tenantId: s.tenant.id,
      method: i.method,
      outcome,
      userId: user?.id ?? null,
      clientId: i.clientId ?? null,
      agentId: a?.agentId ?? null,
      directoryCode: a?.directoryCode ?? null,
      agentMs: a?.agentMs ?? null,
      directoryMs: a?.directoryMs ?? null,
      totalMs: Math.round((performance.now() - s.started) * 100) / 100,
      ...(logged ? {} : { signInLogWritten: false }),
    },
    'sign-in',
  );
  return logged;
}

/** What the caller is told. Only `ok: true` lets it issue tokens: a success the log could not
 * record is not one. */
function answer(s: SignIn, outcome: SignInOutcome, logged: boolean): SignInResult {
  const result: SignInResult =
    outcome === 'success' && s.user && logged
      ? { ok: true, user: toSignedInUser(s.user), requestId: s.requestId }
      : {
          ok: false,
          code: (outcome === 'success' ? 'internal_error' : outcome) as ErrorCode,
          requestId: s.requestId,
        };
  observeSignIn({
    method: s.input.method,
    check: s.check,
    outcome: result.ok ? 'success' : result.code,
    totalMs: performance.now() - s.started,
    agentMs: s.agentAnswer?.agentMs,
    directoryMs: s.agentAnswer?.directoryMs,
  });
  return result;
}

const noAgents: Dispatcher = {
  validate: async () => ({ outcome: 'no_agent' }),
  activeAgentCount: async () => 0,
};

export const createAuthenticator = (
  ctx: CloudContext,
  options: AuthenticatorOptions = {},
): AuthenticatorService => {
  const p: Pipeline = {
    ctx,
    dispatcher: options.dispatcher ?? noAgents,
    lockout: options.lockout ?? noLockout,
    mask: options.timingMask ?? createTimingMask(),
    signInLog: options.signInLog ?? createSignInLog(ctx.db, { log: ctx.log, writes: options.writes }),
    tenants: createTenantCache(ctx.db, options.tenantCacheMs ?? 1000),
  };
  return {
    discover: (tenantId, username) => realmOfDomain(p, tenantId, username),
    authenticate: (input) => signIn(p, input),
    async findUser(tenantId, userId) {
      const u = await getUser(ctx.db, tenantId, userId);
      return u?.enabled ? toSignedInUser(u) : null;
    },
    flush: () => p.signInLog.flush(),
    close: () => p.signInLog.close(),
    invalidate: (tenantId) => p.tenants.invalidate(tenantId),
  };
};
