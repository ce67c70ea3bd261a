/**
 * The error catalog: every outcome of a sign-in and every error an entry point can answer with.
 * docs/errors.md documents the same table; test/errors-doc.test.ts fails when the two disagree.
 *
 * `shown`: the message may be shown to the end user (otherwise a generic text is shown and the
 * detail stays in the sign-in log). `lockout`: the outcome counts toward smart lockout.
 * `retryable`: the same request may succeed if sent again (clients and the dispatcher rely on it).
 */
export interface CatalogEntry {
  readonly status: number;
  readonly oauth: string;
  readonly shown: boolean;
  readonly lockout: boolean;
  readonly retryable: boolean;
  /** Entra ID (AADSTS) analogue, or null where Entra has none. */
  readonly entra: number | null;
  readonly message: string;
}

const e = (
  status: number,
  oauth: string,
  flags: { shown?: boolean; lockout?: boolean; retryable?: boolean },
  entra: number | null,
  message: string,
): CatalogEntry =>
  Object.freeze({
    status,
    oauth,
    shown: flags.shown ?? true,
    lockout: flags.lockout ?? false,
    retryable: flags.retryable ?? false,
    entra,
    message,
  });

export const catalog = {
  // Credential outcomes (decided by the directory, reported by the agent or the cloud hash check).
  invalid_credentials: e(
    400,
    'invalid_grant',
    { lockout: true },
    50126,
    'The user name or password is incorrect.',
  ),
  locked_out: e(400, 'invalid_grant', {}, 50053, 'Your account is locked. Try again later.'),
  account_disabled: e(
    400,
    'invalid_grant',
    {},
    50057,
    'Your account is disabled. Contact your administrator.',
  ),
  password_expired: e(
    400,
    'invalid_grant',
    {},
    50055,
    'Your password has expired. Change it on your organisation network.',
  ),
  password_must_change: e(
    400,
    'invalid_grant',
    {},
    50144,
    'You must change your password before you can sign in.',
  ),
  account_expired: e(400, 'invalid_grant', {}, null, 'Your account has expired. Contact your administrator.'),
  logon_hours: e(400, 'invalid_grant', {}, 80012, 'You cannot sign in at this time of day.'),
  workstation_restricted: e(
    400,
    'invalid_grant',
    {},
    null,
    'Your account may not sign in from this service. Contact your administrator.',
  ),
  // Infrastructure outcomes: never count toward lockout, never look like a wrong password.
  no_agent: e(
    503,
    'temporarily_unavailable',
    { retryable: true },
    80001,
    'Sign-in is temporarily unavailable.',
  ),
  agent_timeout: e(
    504,
    'temporarily_unavailable',
    { retryable: true },
    80002,
    'Sign-in took too long. Try again.',
  ),
  agent_late: e(
    504,
    'temporarily_unavailable',
    { retryable: true },
    80014,
    'Sign-in took too long. Try again.',
  ),
  agent_overloaded: e(
    503,
    'temporarily_unavailable',
    { retryable: true },
    null,
    'Sign-in is busy. Try again.',
  ),
  agent_error: e(502, 'temporarily_unavailable', { retryable: true }, 80005, 'Sign-in failed. Try again.'),
  invalid_response: e(
    502,
    'temporarily_unavailable',
    { retryable: true },
    80003,
    'Sign-in failed. Try again.',
  ),
  directory_unreachable: e(
    503,
    'temporarily_unavailable',
    { retryable: true },
    80007,
    'Sign-in is temporarily unavailable.',
  ),
  directory_timeout: e(
    504,
    'temporarily_unavailable',
    { retryable: true },
    80002,
    'Sign-in took too long. Try again.',
  ),
  agent_decrypt_failed: e(
    502,
    'temporarily_unavailable',
    { retryable: true },
    80010,
    'Sign-in failed. Try again.',
  ),
  agent_no_key: e(502, 'temporarily_unavailable', { retryable: true }, 80011, 'Sign-in failed. Try again.'),
  clock_skew: e(502, 'temporarily_unavailable', { retryable: true }, 80013, 'Sign-in failed. Try again.'),
  // Policy outcomes decided by the cloud before anything is sent on premises.
  passthrough_disabled: e(
    400,
    'invalid_grant',
    {},
    null,
    'Password sign-in is not enabled for your organisation. Contact your administrator.',
  ),
  legacy_auth_blocked: e(
    400,
    'unauthorized_client',
    {},
    null,
    'This organisation does not allow password grants.',
  ),
  federated_user: e(
    400,
    'invalid_grant',
    {},
    null,
    'Your organisation signs you in elsewhere. Use the browser sign-in.',
  ),
  // Entry-point errors (admin API, gateway, CLI, config).
  validation_failed: e(400, 'invalid_request', {}, null, 'The request is not valid.'),
  unauthorized: e(401, 'invalid_client', {}, null, 'Authentication is required.'),
  forbidden: e(403, 'access_denied', {}, null, 'You are not allowed to do this.'),
  not_found: e(404, 'invalid_request', {}, null, 'Not found.'),
  conflict: e(409, 'invalid_request', {}, null, 'The request conflicts with the current state.'),
  no_active_agent: e(
    409,
    'invalid_request',
    {},
    null,
    'Pass-through authentication cannot be enabled while no agent is active.',
  ),
  lockout_weaker_than_directory: e(
    409,
    'invalid_request',
    {},
    null,
    "Smart lockout must trip before the directory's own lockout: use a lower threshold and at least its duration.",
  ),
  agent_limit_reached: e(
    409,
    'invalid_request',
    {},
    null,
    'The tenant already has the maximum number of agents.',
  ),
  registration_token_invalid: e(
    401,
    'invalid_grant',
    {},
    null,
    'The registration token is invalid, expired or already used.',
  ),
  authorization_pending: e(
    400,
    'authorization_pending',
    { retryable: true },
    null,
    'The administrator has not approved the code yet.',
  ),
  slow_down: e(400, 'slow_down', { retryable: true }, null, 'Polling too fast; wait longer between polls.'),
  rate_limited: e(
    429,
    'temporarily_unavailable',
    { retryable: true },
    null,
    'Too many requests. Try again later.',
  ),
  expired_token: e(400, 'expired_token', {}, null, 'The device code has expired. Start again.'),
  access_denied: e(400, 'access_denied', {}, null, 'The administrator denied the request.'),
  certificate_rejected: e(401, 'invalid_client', {}, null, 'The client certificate is not accepted.'),
  protocol_error: e(400, 'invalid_request', {}, null, 'The message is malformed.'),
  frame_too_large: e(413, 'invalid_request', {}, null, 'The message is too large.'),
  config_invalid: e(500, 'server_error', { shown: false }, null, 'The configuration is not valid.'),
  not_ready: e(
    503,
    'temporarily_unavailable',
    { retryable: true },
    null,
    'The service is starting. Try again.',
  ),
  internal_error: e(500, 'server_error', { shown: false, retryable: true }, null, 'Something went wrong.'),
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof catalog;
export const errorCodes = Object.keys(catalog) as ErrorCode[];

/** Outcomes an agent may report for a validation request (a subset of the catalog, plus success). */
export const agentOutcomes = [
  'success',
  'invalid_credentials',
  'locked_out',
  'account_disabled',
  'password_expired',
  'password_must_change',
  'account_expired',
  'logon_hours',
  'workstation_restricted',
  'directory_unreachable',
  'directory_timeout',
  'agent_decrypt_failed',
  'agent_no_key',
  'clock_skew',
  'agent_late',
  'agent_error',
] as const satisfies readonly (ErrorCode | 'success')[];
export type AgentOutcome = (typeof agentOutcomes)[number];
export type SignInOutcome = ErrorCode | 'success';

/** The one error type every entry point throws; serialised by each transport from the catalog. */
export class GatehouseError extends Error {
  readonly code: ErrorCode;
  readonly entry: CatalogEntry;
  /** Detail for logs and for API callers (never includes secrets). */
  readonly detail: unknown;

  constructor(code: ErrorCode, detail?: unknown, options?: ErrorOptions) {
    super(catalog[code].message, options);
    this.name = 'GatehouseError';
    this.code = code;
    this.entry = catalog[code];
    this.detail = detail;
  }

  /** Body for HTTP APIs (admin, registration): `{ error, message, detail? }`. */
  toJSON(): { error: ErrorCode; message: string; detail?: unknown } {
    return this.detail === undefined
      ? { error: this.code, message: this.message }
      : { error: this.code, message: this.message, detail: this.detail };
  }
}

export const isGatehouseError = (err: unknown): err is GatehouseError =>
  // Checked by shape as well as class: two copies of this package must still agree.
  err instanceof GatehouseError ||
  (typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'GatehouseError');
