/**
 * Maps what an LDAP bind answered (or how it failed) to an agent outcome and the raw code kept in
 * the sign-in log. AD puts the reason of a failed simple bind in the diagnostic text
 * ("... AcceptSecurityContext error, data 775, v1db1"); OpenLDAP says a bare 49 for every failure.
 */
import type { AgentOutcome } from '@gatehouse/protocol';

export interface MappedOutcome {
  outcome: AgentOutcome;
  /** e.g. "0", "49", "49/775", "net:ECONNREFUSED", "timeout". */
  directoryCode: string;
  /** True when the server could not be used at all (so another server should be tried). */
  serverFailure: boolean;
}

/** AD sub-codes. Account states only come back when the password was right (AD decides that). */
const adData: Record<string, AgentOutcome> = {
  '52e': 'invalid_credentials',
  '525': 'invalid_credentials',
  '530': 'logon_hours',
  '531': 'workstation_restricted',
  '532': 'password_expired',
  '533': 'account_disabled',
  '701': 'account_expired',
  '773': 'password_must_change',
  '775': 'locked_out',
};

const NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
]);

/** Thrown by our own deadline wrapper. */
export class DirectoryTimeoutError extends Error {
  constructor(what: string) {
    super(`${what} timed out`);
    this.name = 'DirectoryTimeoutError';
  }
}

export const mapBindError = (err: unknown): MappedOutcome => {
  const e = err as { code?: unknown; message?: unknown; name?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (typeof e?.code === 'number') {
    const code = e.code;
    if (code === 49) {
      const sub = /\bdata ([0-9a-f]{3,4})\b/i.exec(message)?.[1]?.toLowerCase();
      if (sub)
        return {
          outcome: adData[sub] ?? 'invalid_credentials',
          directoryCode: `49/${sub}`,
          serverFailure: false,
        };
      return { outcome: 'invalid_credentials', directoryCode: '49', serverFailure: false };
    }
    // 53 unwillingToPerform (empty password), 34 invalidDNSyntax, 32 noSuchObject: a bad name or
    // password from the caller's point of view, and indistinguishable from a wrong password.
    if (code === 53 || code === 34 || code === 32) {
      return { outcome: 'invalid_credentials', directoryCode: String(code), serverFailure: false };
    }
    // 51 busy, 52 unavailable, 80 other: this server cannot serve us now.
    if (code === 51 || code === 52 || code === 80) {
      return { outcome: 'directory_unreachable', directoryCode: String(code), serverFailure: true };
    }
    if (code === 3) return { outcome: 'directory_timeout', directoryCode: '3', serverFailure: true };
    // 8 strongerAuthRequired and the like: a configuration problem, not the user's fault.
    return { outcome: 'agent_error', directoryCode: String(code), serverFailure: false };
  }
  // ldapts' connectTimeout: the server could not be reached at all (a dead or filtered DC).
  if (message === 'Connection timeout') {
    return { outcome: 'directory_unreachable', directoryCode: 'net:connect-timeout', serverFailure: true };
  }
  if (err instanceof DirectoryTimeoutError || /timed? ?out/i.test(message)) {
    return { outcome: 'directory_timeout', directoryCode: 'timeout', serverFailure: true };
  }
  if (typeof e?.code === 'string' && NET_CODES.has(e.code)) {
    return { outcome: 'directory_unreachable', directoryCode: `net:${e.code}`, serverFailure: true };
  }
  if (typeof e?.code === 'string' && /CERT|TLS|SSL|SELF_SIGNED/.test(e.code)) {
    return { outcome: 'directory_unreachable', directoryCode: `tls:${e.code}`, serverFailure: true };
  }
  if (/Socket error|Connection closed|socket|ECONN|TLS|certificate/i.test(message)) {
    const tls = /TLS|certificate|self.signed|SSL/i.test(message);
    return { outcome: 'directory_unreachable', directoryCode: tls ? 'tls' : 'net', serverFailure: true };
  }
  return { outcome: 'agent_error', directoryCode: 'error', serverFailure: false };
};
