/**
 * Just-in-time users (a tenant switch, off by default): a sign-in by a name the cloud has not
 * synced asks one of the tenant's agents to look the user up (UPN, DOMAIN\name or mail) and bind
 * as them, within the sign-in's own deadline. Only a right password brings the user's attributes
 * back; the user is then created as a synced user (the next sync run keeps them up to date, and a
 * full run brings their groups) and audited as `user.jit_created`. Every other answer is the
 * agent's outcome, so a name nobody has answers `invalid_credentials` like a wrong password, and
 * creates nothing.
 */
import type { SignInOutcome } from '@gatehouse/protocol';
import { catalog } from '@gatehouse/protocol';
import type { CloudContext } from '../context.ts';
import { audit } from '../store/audit.ts';
import type { Tenant } from '../store/tenants.ts';
import { findByLogin, type UserRecord, upsertSyncedUsers } from '../store/users.ts';
import { domainOf } from '../store/util.ts';
import type { Dispatcher, ValidationAnswer } from './types.ts';

/** What of the sign-in in flight (authenticator.ts) the look-up needs. */
export interface JitAttempt {
  tenant: { id: string };
  requestId: string;
  /** The name as typed, trimmed and lower-cased. */
  login: string;
  input: { password: string };
  /** The tenant's federated domains: their users never sign in here. */
  federated: Map<string, string>;
}

export interface JitResult {
  outcome: SignInOutcome;
  answer: ValidationAnswer;
  /** The user created (or brought up to date) by this sign-in. */
  user?: UserRecord;
}

/** Whether an unknown name is looked up: the switch, pass-through on, and a password to check. */
export const mayLookUp = (tenant: Tenant, login: string, password: string): boolean =>
  tenant.jitUsers && tenant.ptaEnabled && password.length > 0 && login.length > 0 && login.length <= 256;

const isOutcome = (v: unknown): v is SignInOutcome =>
  typeof v === 'string' && (v === 'success' || Object.hasOwn(catalog, v));

/** Whether the agent's user is the one the typed name denotes (the agent checked it too). */
const denotes = (u: NonNullable<ValidationAnswer['user']>, login: string): boolean =>
  [u.upn, u.mail, u.onPremName].some((x) => x?.toLowerCase() === login) ||
  (login.includes('\\') && u.onPremName?.toLowerCase() === login.slice(login.indexOf('\\') + 1));

/** The look-up, the password check and, on a right password, the new user. Never throws. */
export const signInJustInTime = async (
  ctx: Pick<CloudContext, 'db' | 'now' | 'log'>,
  dispatcher: Dispatcher,
  a: JitAttempt,
  deadline: number,
): Promise<JitResult> => {
  const tenantId = a.tenant.id;
  let answer: ValidationAnswer;
  try {
    answer = await dispatcher.validate({
      kind: 'cleartext',
      tenantId,
      requestId: a.requestId,
      user: { upn: a.login, dn: '', anchor: '', lookup: true },
      password: a.input.password,
      deadline,
    });
  } catch {
    return { outcome: 'agent_error', answer: { outcome: 'agent_error' } };
  }
  const outcome = isOutcome(answer.outcome) ? answer.outcome : 'invalid_response';
  if (outcome !== 'success') return { outcome, answer };
  const found = answer.user;
  // An agent from before `lookup` binds with the typed name and returns no attributes: nothing
  // to create, so nothing is let in.
  if (!found) {
    ctx.log.warn({ requestId: a.requestId, agentId: answer.agentId }, 'jit: the agent sent no user');
    return { outcome: 'invalid_credentials', answer };
  }
  if (!denotes(found, a.login)) return { outcome: 'invalid_response', answer };
  if (a.federated.has(domainOf(found.upn))) return { outcome: 'federated_user', answer };
  try {
    const { groups: _, ...attributes } = found;
    const s = await upsertSyncedUsers(ctx.db, tenantId, [attributes], ctx.now());
    const user = await findByLogin(ctx.db, tenantId, found.upn, 'upn');
    if (s.skipped > 0 || !user) {
      // The UPN belongs to another account (a cloud-only one): never merged by a sign-in.
      ctx.log.warn({ requestId: a.requestId }, 'jit: the UPN is held by another account');
      return { outcome: 'invalid_credentials', answer };
    }
    await audit(
      ctx.db,
      {
        tenantId: tenantId,
        actor: answer.agentId ?? 'agent',
        action: s.created > 0 ? 'user.jit_created' : 'user.jit_updated',
        target: user.id,
        detail: { upn: user.upn, anchor: found.anchor, requestId: a.requestId },
      },
      ctx.now(),
    );
    ctx.log.info({ requestId: a.requestId, userId: user.id, created: s.created > 0 }, 'jit user');
    return { outcome: user.enabled ? 'success' : 'account_disabled', answer, user };
  } catch (err) {
    ctx.log.warn({ err, requestId: a.requestId }, 'jit: the user could not be stored');
    return { outcome: 'internal_error', answer };
  }
};
