/**
 * One validation request, start to end: deadline against this host's clock, HPKE open bound to
 * (tenant, request, user, deadline), the bind, and the answer with the time spent here and at
 * the directory. The password lives only in this function's locals and is never logged.
 */
import { type AgentOutcome, aad, hpkeOpen, type Validate, type ValidateResult } from '@gatehouse/protocol';
import type { Directory } from './directory/index.ts';
import { lookupUser } from './lookup.ts';

/** Beyond this difference between the cloud's sentAt and our clock, deadlines mean nothing. */
export const MAX_CLOCK_SKEW_MS = 60_000;

export interface ValidateDeps {
  directory: Directory;
  hpkePrivateKey: Uint8Array;
  /** The key replaced by the last renewal: requests sealed just before it still open. */
  previousHpkePrivateKey?: Uint8Array;
  /** Our own tenant (from registration), never the one in the message. */
  tenantId: string;
  now?: () => number;
}

// One decoder for every request: stateless with the default (non-streaming) decode.
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Opens the sealed password; null when it does not open (wrong key, other user/request/tenant). */
export const openPassword = (msg: Validate, tenantId: string, privateKey: Uint8Array): string | null => {
  try {
    const pt = hpkeOpen(
      privateKey,
      Buffer.from(msg.enc, 'base64url'),
      Buffer.from(msg.ct, 'base64url'),
      aad(tenantId, msg.id, msg.user.upn, msg.deadline),
    );
    const pw = utf8.decode(pt);
    pt.fill(0);
    return pw;
  } catch {
    return null;
  }
};

export const handleValidate = async (msg: Validate, deps: ValidateDeps): Promise<ValidateResult> => {
  const started = performance.now();
  const now = (deps.now ?? Date.now)();
  const answer = (outcome: AgentOutcome, extra: Partial<ValidateResult> = {}): ValidateResult => ({
    type: 'result',
    id: msg.id,
    outcome,
    directoryMs: 0,
    ...extra,
    agentMs: Math.round((performance.now() - started) * 100) / 100,
  });
  if (Math.abs(now - msg.sentAt) > MAX_CLOCK_SKEW_MS) {
    return answer('clock_skew', { directoryCode: `skew:${now - msg.sentAt}` });
  }
  if (now >= msg.deadline) return answer('agent_late');
  let password = openPassword(msg, deps.tenantId, deps.hpkePrivateKey);
  if (password === null && deps.previousHpkePrivateKey) {
    password = openPassword(msg, deps.tenantId, deps.previousHpkePrivateKey);
  }
  if (password === null) return answer('agent_decrypt_failed');
  // Just in time (lookup.ts): a name that denotes nobody binds as nobody, which answers (and waits)
  // like a wrong password.
  const clock = deps.now ?? Date.now;
  const found = msg.user.lookup
    ? await lookupUser(deps.directory, msg.user.upn, msg.deadline - now)
    : undefined;
  const user = found === undefined ? msg.user : found === null ? { dn: '', upn: '' } : found;
  const r = await deps.directory.validate(user, password, { timeoutMs: msg.deadline - clock() });
  return answer(r.outcome, {
    directoryCode: r.directoryCode,
    server: r.server,
    directoryMs: Math.round(r.directoryMs * 100) / 100,
    ...(found && r.outcome === 'success' ? { user: found } : {}),
  });
};
