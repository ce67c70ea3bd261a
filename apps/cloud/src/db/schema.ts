/**
 * Table types for Kysely. Times are integers (ms since epoch) and flags are 0/1 integers so the
 * same migrations and queries run on SQLite and PostgreSQL.
 */
import type { Generated } from 'kysely';

export interface TenantTable {
  id: string;
  name: string;
  created_at: number;
  pta_enabled: number;
  legacy_auth: number;
  /** Just-in-time users: a sign-in by a name not synced yet asks an agent to look it up (0/1). */
  jit_users: number;
  /** Which attribute users type as their sign-in name: 'upn' or 'mail'. */
  login_attribute: string;
  lockout_threshold: number;
  lockout_duration_s: number;
  /** Tenant CA: certificate (PEM) and private key sealed with the configured secret key. */
  ca_cert: string;
  ca_key_sealed: string;
  /** OIDC signing JWKS (private), sealed. */
  jwks_sealed: string;
  /** Cookie signing keys (JSON array), sealed. */
  cookie_keys_sealed: string;
  /** The directory's own lockout policy as last reported by an agent (null until one reports). */
  directory_lockout_threshold: number | null;
  directory_lockout_duration_s: number | null;
}

export interface DomainTable {
  name: string;
  tenant_id: string;
  /** 'managed' | 'federated' */
  kind: string;
  verified: number;
  verification_code: string;
  federation_url: string | null;
  created_at: number;
}

export interface UserTable {
  id: string;
  tenant_id: string;
  /** Lower-cased UPN; the sign-in name. */
  upn: string;
  /** 'cloud' | 'synced' */
  source: string;
  password_hash: string | null;
  display_name: string | null;
  mail: string | null;
  enabled: number;
  /** JSON array of role names, e.g. ["global_admin"]. */
  roles: string;
  source_anchor: string | null;
  on_prem_name: string | null;
  on_prem_dn: string | null;
  synced_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface ClientTable {
  client_id: string;
  tenant_id: string;
  /** oidc-provider client metadata, JSON (client_secret included for confidential clients). */
  metadata: string;
  created_at: number;
}

export interface AgentTable {
  id: string;
  tenant_id: string;
  hostname: string;
  version: string;
  cert_serial: string;
  cert_not_after: number;
  hpke_public_key: string;
  external_ip: string | null;
  last_seen_at: number | null;
  created_at: number;
  deleted_at: number | null;
}

export interface RegistrationTokenTable {
  token_hash: string;
  tenant_id: string;
  created_by: string;
  expires_at: number;
  used_at: number | null;
}

export interface DeviceCodeTable {
  device_code_hash: string;
  user_code: string;
  tenant_id: string;
  hostname: string;
  expires_at: number;
  /** 'pending' | 'approved' | 'denied' | 'used' */
  status: string;
  approved_by: string | null;
  last_poll_at: number | null;
  /** Null on rows from before migration 0006. */
  requester_ip: string | null;
  requested_at: number | null;
}

export interface SignInTable {
  id: Generated<number>;
  tenant_id: string;
  at: number;
  request_id: string;
  upn: string;
  user_id: string | null;
  /** 'browser' | 'password_grant' */
  method: string;
  outcome: string;
  client_id: string | null;
  client_ip: string | null;
  agent_id: string | null;
  server: string | null;
  directory_code: string | null;
  agent_ms: number | null;
  directory_ms: number | null;
  total_ms: number;
}

export interface AuditTable {
  id: Generated<number>;
  tenant_id: string;
  at: number;
  actor: string;
  action: string;
  target: string | null;
  detail: string | null;
}

export interface OidcPayloadTable {
  model: string;
  id: string;
  tenant_id: string;
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  expires_at: number | null;
  consumed_at: number | null;
  /** The user (users.id) the row was issued for, so a disabled or deleted user's grants can go. */
  account_id: string | null;
}

export interface LockoutCounterTable {
  tenant_id: string;
  user_id: string;
  /** 'familiar' | 'unfamiliar' */
  location: string;
  failures: number;
  lock_count: number;
  locked_until: number;
  /** Attempts admitted and not yet settled; stale once `in_flight_until` has passed. */
  in_flight: number;
  in_flight_until: number;
  /**
   * The process (its incarnation id) that counted in every attempt now in flight, or '*' when
   * more than one did: a single one that is gone means all of them are (lockout/rules.ts).
   */
  in_flight_by: Generated<string>;
  updated_at: number;
}

export interface LockoutBadPasswordTable {
  tenant_id: string;
  user_id: string;
  /** HMAC of the wrong password under a key derived from the secret key: never the password. */
  hash: string;
  expires_at: number;
}

export interface FamiliarLocationTable {
  tenant_id: string;
  user_id: string;
  key_hash: string;
  last_success_at: number;
}

/** One row: a constant sealed with the secret key the database was set up with (store/key-check.ts). */
export interface KeyCheckTable {
  id: string;
  sealed: string;
  created_at: number;
}

export interface GroupTable {
  id: string;
  tenant_id: string;
  source_anchor: string;
  name: string;
  /** AD: NETBIOS\\sAMAccountName. */
  on_prem_name: string | null;
  /** AD: objectSid, S-1-5-... */
  on_prem_sid: string | null;
  dn: string;
  security: number;
  description: string | null;
  synced_at: number;
  created_at: number;
  updated_at: number;
}

/** A synced user's membership of a group, direct or nested (resolved on premises). */
export interface GroupMemberTable {
  tenant_id: string;
  group_id: string;
  user_id: string;
}

export interface SyncRunTable {
  tenant_id: string;
  /** The run id the agent (or whoever asked for the run) chose. */
  id: string;
  agent_id: string;
  /** The directory server the agent read from. */
  server: string | null;
  /** 'full' | 'delta' */
  mode: string;
  /** 'running' | 'succeeded' | 'guarded' | 'failed' */
  status: string;
  started_at: number;
  /** Last page applied: a running run not updated for long is stalled. */
  updated_at: number;
  finished_at: number | null;
  pages: number;
  total_pages: number | null;
  /** JSON: users and groups added, updated, deleted, seen; skipped. */
  counts: string;
  /** The agent's full-sync interval when it started the run (sync health: overdue after a few). */
  interval_minutes: number | null;
  error: string | null;
}

/** Settings of the running service, by name (store/service-urls.ts). */
export interface ServiceSettingTable {
  name: string;
  value: string;
  updated_at: number;
}

/** An API (resource server) of a tenant (store/apis.ts). */
export interface ApiTable {
  id: string;
  tenant_id: string;
  /** The resource indicator (RFC 8707) clients ask for, and the `aud` of its tokens. */
  identifier: string;
  name: string;
  /** JSON array of scope names. */
  scopes: string;
  /** 'jwt' (RFC 9068) | 'opaque' (introspected) */
  token_format: string;
  /** 'ES256' | 'RS256' */
  signing_alg: string;
  access_token_ttl_s: number;
  /** The confidential client the API itself authenticates as to introspect its tokens. */
  introspection_client_id: string | null;
  created_at: number;
}

/** The scopes an administrator granted a client on an API. */
export interface ApiGrantTable {
  tenant_id: string;
  api_id: string;
  client_id: string;
  /** JSON array of scope names. */
  scopes: string;
  granted_at: number;
}

/** A token signing key of a tenant (store/signing-keys.ts): published from created_at. */
export interface SigningKeyTable {
  tenant_id: string;
  kid: string;
  /** 'ES256' | 'RS256' */
  alg: string;
  /** The private JWK, sealed. */
  jwk_sealed: string;
  created_at: number;
  /** It signs from then (until a newer key of its alg does). */
  signs_from: number;
  /** Removed from the JWKS then (null: not superseded). */
  retires_at: number | null;
}

export interface Database {
  key_check: KeyCheckTable;
  service_settings: ServiceSettingTable;
  tenants: TenantTable;
  apis: ApiTable;
  api_grants: ApiGrantTable;
  signing_keys: SigningKeyTable;
  domains: DomainTable;
  users: UserTable;
  clients: ClientTable;
  agents: AgentTable;
  registration_tokens: RegistrationTokenTable;
  device_codes: DeviceCodeTable;
  signins: SignInTable;
  audit: AuditTable;
  oidc_payloads: OidcPayloadTable;
  lockout_counters: LockoutCounterTable;
  lockout_bad_passwords: LockoutBadPasswordTable;
  familiar_locations: FamiliarLocationTable;
  groups: GroupTable;
  group_members: GroupMemberTable;
  sync_runs: SyncRunTable;
}
