/**
 * The calls the hot paths make: each is a few Counter.inc / Histogram.observe with label values
 * mapped onto fixed sets here, so no caller can widen a label by accident.
 */
import type { LogEvent } from 'kysely';
import {
  agentDuration,
  dbQueryDuration,
  directoryDuration,
  signInDuration,
  signIns,
  syncDuration,
  syncRuns,
  syncUsers,
  tokenErrors,
  tokensIssued,
} from './families.ts';

/** Where a sign-in's password was checked. */
export type SignInCheck = 'cloud' | 'agent' | 'none';

export interface SignInObservation {
  method: 'browser' | 'password_grant';
  check: SignInCheck;
  /** A catalog code or 'success' (a fixed set). */
  outcome: string;
  totalMs: number;
  agentMs?: number | null;
  directoryMs?: number | null;
}

export const observeSignIn = (s: SignInObservation): void => {
  const method = s.method === 'browser' ? 'page' : 'password_grant';
  signIns.inc({ method, check: s.check, outcome: s.outcome });
  signInDuration.observe({ method, check: s.check }, s.totalMs / 1000);
  if (typeof s.agentMs === 'number') agentDuration.observe(s.agentMs / 1000);
  if (typeof s.directoryMs === 'number') directoryDuration.observe(s.directoryMs / 1000);
};

const OPS: Record<string, string> = {
  SelectQueryNode: 'select',
  InsertQueryNode: 'insert',
  UpdateQueryNode: 'update',
  DeleteQueryNode: 'delete',
};

/** Kysely's `log` hook: every statement's time, by kind. */
export const observeQuery = (event: LogEvent): void => {
  const op = OPS[event.query.query.kind] ?? 'other';
  dbQueryDuration.observe(
    { op, result: event.level === 'error' ? 'error' : 'ok' },
    event.queryDurationMillis / 1000,
  );
};

const GRANTS: Record<string, string> = {
  authorization_code: 'authorization_code',
  refresh_token: 'refresh_token',
  password: 'password',
  client_credentials: 'client_credentials',
  'urn:ietf:params:oauth:grant-type:device_code': 'device_code',
};
/** OAuth error codes a token endpoint answers (RFC 6749 5.2 and our catalog's mapping). */
const ERRORS = new Set([
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'temporarily_unavailable',
  'server_error',
  'access_denied',
]);

const grantOf = (grantType: unknown): string =>
  typeof grantType === 'string' ? (GRANTS[grantType] ?? 'other') : 'other';

export const observeTokenIssued = (grantType: unknown): void => {
  tokensIssued.inc({ grant: grantOf(grantType) });
};

export const observeTokenError = (grantType: unknown, error: unknown): void => {
  const e = typeof error === 'string' && ERRORS.has(error) ? error : 'other';
  tokenErrors.inc({ grant: grantOf(grantType), error: e });
};

type SyncMode = 'full' | 'delta';

/** A sync run's first page (gateway/sync.ts); returns the time it started. */
export const syncRunStarted = (): number => performance.now();

/** The final page was applied (the cloud sends sync.ack with the summary). */
export const syncRunApplied = (
  mode: SyncMode,
  startedAt: number,
  s: { created: number; updated: number; deleted: number; skipped: number; deletionGuarded: boolean },
): void => {
  syncRuns.inc({ mode, result: s.deletionGuarded ? 'guarded' : 'applied' });
  syncDuration.observe({ mode }, (performance.now() - startedAt) / 1000);
  syncUsers.inc({ mode, change: 'created' }, s.created);
  syncUsers.inc({ mode, change: 'updated' }, s.updated);
  syncUsers.inc({ mode, change: 'deleted' }, s.deleted);
  syncUsers.inc({ mode, change: 'skipped' }, s.skipped);
};

/** A run that ends without being applied: a page failed, or the agent left or started over. */
export const syncRunEnded = (mode: SyncMode, result: 'failed' | 'interrupted'): void => {
  syncRuns.inc({ mode, result });
};
