/**
 * Every message on the agent channel and every registration body, as zod schemas. The cloud and
 * the agent parse with these and nothing else, so the wire format has exactly one definition.
 */
import { z } from 'zod';
import { agentOutcomes } from './errors.ts';
import { Dn, Id, TenantId } from './ids.ts';

/** Bumped when a message changes incompatibly; the cloud refuses agents of another major. */
export const PROTOCOL_VERSION = 1;
/** Frames above this size are refused by both ends (a validation request is well under 4 KiB). */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Maximum agents per tenant (Entra allows 40 too). */
export const MAX_AGENTS_PER_TENANT = 40;
/** Groups one synced user may name (a frame must hold one user with all of them). */
export const MAX_GROUPS_PER_USER = 1000;
/** The WebSocket path of the agent gateway. */
export const AGENT_CHANNEL_PATH = '/agent/v1/connect';

const id = Id;
export const b64u = z
  .string()
  .max(8192)
  .regex(/^[A-Za-z0-9_-]*$/, 'base64url');
const ms = z.number().int().nonnegative();

/** The directory's own account lockout policy (AD domain policy, or OpenLDAP's default ppolicy). */
export const DirectoryLockoutPolicy = z.object({
  /** Failed binds before the directory locks the account; 0 = never. */
  threshold: z.number().int().nonnegative(),
  /** How long the directory keeps an account locked, in seconds; 0 = until an administrator unlocks it. */
  durationS: z.number().nonnegative(),
});
export type DirectoryLockoutPolicy = z.infer<typeof DirectoryLockoutPolicy>;

export const DirectoryHealth = z.object({
  ok: z.boolean(),
  lockoutPolicy: DirectoryLockoutPolicy.optional(),
  /** The server that answered the last health probe (URL), if any. */
  server: z.string().max(512).optional(),
  error: z.string().max(512).optional(),
});
export type DirectoryHealth = z.infer<typeof DirectoryHealth>;

// ---- agent -> cloud -------------------------------------------------------------------------

export const Hello = z.object({
  type: z.literal('hello'),
  protocol: z.number().int(),
  version: z.string().max(64),
  hostname: z.string().max(255),
  capabilities: z.array(z.string().max(64)).max(32),
  directory: DirectoryHealth,
  /** The agent's clock (ms since epoch) when it sent the hello; the cloud measures skew from it. */
  clock: ms,
});

export const Heartbeat = z.object({
  type: z.literal('heartbeat'),
  clock: ms,
  directory: DirectoryHealth,
  inFlight: z.number().int().nonnegative(),
});

export const SyncedUser = z.object({
  anchor: z.string().min(1).max(256),
  upn: z.string().min(3).max(256),
  onPremName: z.string().max(256).optional(),
  dn: Dn.min(1),
  mail: z.string().max(256).optional(),
  displayName: z.string().max(256).optional(),
  enabled: z.boolean(),
  /**
   * Anchors of every group the user is in, nested membership resolved on premises. Absent: the
   * agent does not sync groups, and the user's memberships are left as they are.
   */
  groups: z.array(z.string().min(1).max(64)).max(MAX_GROUPS_PER_USER).optional(),
});
export type SyncedUser = z.infer<typeof SyncedUser>;

export const ValidateResult = z.object({
  type: z.literal('result'),
  id,
  outcome: z.enum(agentOutcomes),
  /** Raw directory answer for the sign-in log, e.g. "49/52e" or "ppolicy:accountLocked". */
  directoryCode: z.string().max(64).optional(),
  /** Which directory server answered. */
  server: z.string().max(512).optional(),
  agentMs: z.number().nonnegative(),
  directoryMs: z.number().nonnegative(),
  /**
   * A `lookup` request whose password was right: the user as sync would send them (without
   * groups), for the cloud to create just in time.
   */
  user: SyncedUser.optional(),
});
export type ValidateResult = z.infer<typeof ValidateResult>;

/** A directory group: AD security or distribution group, or OpenLDAP groupOfNames/groupOfUniqueNames. */
export const SyncedGroup = z.object({
  /** objectGUID (AD) or entryUUID (OpenLDAP): survives renames and moves. */
  anchor: z.string().min(1).max(64),
  /** cn (AD: the sAMAccountName when cn is absent). */
  name: z.string().min(1).max(256),
  /** AD: NETBIOS\sAMAccountName. */
  onPremName: z.string().max(256).optional(),
  /** AD: objectSid in S-1-5-... form. */
  sid: z.string().max(184).optional(),
  dn: Dn.min(1),
  /** AD: from groupType bit 0x80000000; OpenLDAP groups are security groups. */
  security: z.boolean(),
  description: z.string().max(1024).optional(),
});
export type SyncedGroup = z.infer<typeof SyncedGroup>;

/** Part of a group's member list in a delta run (SyncPage.groupMembers). */
export const GroupMembers = z.object({
  group: z.string().min(1).max(64),
  users: z.array(z.string().min(1).max(256)).max(1000),
});
export type GroupMembers = z.infer<typeof GroupMembers>;

/**
 * One page of a sync run. The last page has `final: true`; the cloud then applies deletions: a full
 * run deletes what it did not list, a delta run only what it names in `deletedUsers`.
 */
export const SyncPage = z.object({
  type: z.literal('sync.page'),
  runId: id,
  /** full: the whole directory; delta: what changed since the agent's high-water mark. */
  mode: z.enum(['full', 'delta']),
  seq: z.number().int().nonnegative(),
  /** Pages in this run, when the agent knows (progress). */
  total: z.number().int().positive().optional(),
  /** The directory server the run read from. */
  server: z.string().max(512).optional(),
  /** The agent's full-sync interval (first page): the cloud calls sync overdue after a few. */
  intervalMinutes: z.number().positive().max(525_600).optional(),
  /** The run carries groups: groups it did not list are deleted at the end (behind the guard). */
  withGroups: z.boolean().optional(),
  /** Groups come in the pages before the users that name them. */
  groups: z.array(SyncedGroup).max(500).optional(),
  users: z.array(SyncedUser).max(500),
  /** Delta runs: anchors of users deleted in the directory since the mark. */
  deletedUsers: z.array(z.string().min(1).max(256)).max(5000).optional(),
  /**
   * Delta runs: the complete current members (user anchors, at any depth) of each group whose
   * membership may have changed since the mark. A group's list may be split over several entries
   * and pages; at the end of the run the cloud replaces those groups' memberships with the union.
   */
  groupMembers: z.array(GroupMembers).max(500).optional(),
  final: z.boolean(),
});
export type SyncPage = z.infer<typeof SyncPage>;

/**
 * The agent is stopping: the cloud sends it nothing new on this connection. The agent still
 * answers what it holds (and any request that crossed this frame), then closes with 1001.
 */
export const Draining = z.object({ type: z.literal('draining') });

export const AgentMessage = z.discriminatedUnion('type', [
  Hello,
  Heartbeat,
  ValidateResult,
  SyncPage,
  Draining,
]);
export type AgentMessage = z.infer<typeof AgentMessage>;

// ---- cloud -> agent -------------------------------------------------------------------------

export const Welcome = z.object({
  type: z.literal('welcome'),
  agentId: id,
  tenantId: TenantId,
  heartbeatMs: z.number().int().positive(),
  serverClock: ms,
});

/** The user a password is checked for (also what a relayed request carries: relay.ts). */
export const ValidateUser = z.object({
  upn: z.string().max(256),
  dn: Dn,
  anchor: z.string().max(256),
  onPremName: z.string().max(256).optional(),
  /**
   * Just-in-time users: the cloud has not synced this name (`upn` holds it as typed: a UPN,
   * DOMAIN\name or mail; `dn` and `anchor` are empty). The agent looks the user up with the service
   * account, binds as them and, when the password is right, answers with their attributes.
   */
  lookup: z.boolean().optional(),
});
export type ValidateUser = z.infer<typeof ValidateUser>;

/**
 * A password validation request. The password is sealed with HPKE to this agent's key; the
 * associated data is `aad(tenantId, id, user.upn, deadline)` so a ciphertext cannot be replayed
 * for another user, request or tenant.
 */
export const Validate = z.object({
  type: z.literal('validate'),
  id,
  tenantId: TenantId,
  user: ValidateUser,
  /** HPKE encapsulated key and ciphertext, base64url. */
  enc: b64u,
  ct: b64u,
  /** Absolute deadline, cloud clock, ms since epoch. */
  deadline: ms,
  /** Cloud clock when sent; with `deadline` the agent knows how long it has. */
  sentAt: ms,
});
export type Validate = z.infer<typeof Validate>;

export const SyncRequest = z.object({
  type: z.literal('sync.request'),
  /** delta: changes since the agent's mark (the agent runs a full sync when it has none). */
  mode: z.enum(['full', 'delta']),
  /** The run id to use, so whoever asked can follow the run's record. */
  runId: id.optional(),
});

export const SyncAck = z.object({
  type: z.literal('sync.ack'),
  runId: id,
  seq: z.number().int().nonnegative(),
  /** Set on the final page: what the cloud applied. */
  summary: z
    .object({
      created: ms,
      updated: ms,
      deleted: ms,
      skipped: ms,
      deletionGuarded: z.boolean(),
      groups: z.object({ created: ms, updated: ms, deleted: ms }).optional(),
    })
    .optional(),
});

export const ErrorMessage = z.object({
  type: z.literal('error'),
  code: z.string().max(64),
  message: z.string().max(512),
});

/**
 * The cloud asks the agent to move to another gateway node (rebalancing: a node joined, or came
 * back, and this one holds more than its share). Sent only to agents whose hello listed the
 * `reconnect` capability. The agent waits a random part of `jitterMs`, opens its next connection
 * through its normal path (next gateway URL, or the balancer), and only once that one is welcomed
 * drains this one (a `draining` frame, then the answers to what it holds) and closes it with 1000:
 * its tenant never loses a connected agent to a move. If the new connection fails, it stays.
 */
export const Reconnect = z.object({
  type: z.literal('reconnect'),
  reason: z.enum(['rebalance']),
  jitterMs: z.number().int().nonnegative().max(600_000),
});
export type Reconnect = z.infer<typeof Reconnect>;

export const CloudMessage = z.discriminatedUnion('type', [
  Welcome,
  Validate,
  SyncRequest,
  SyncAck,
  ErrorMessage,
  Reconnect,
]);
export type CloudMessage = z.infer<typeof CloudMessage>;

/** Associated data binding a sealed password to its request. */
export const aad = (tenantId: string, requestId: string, upn: string, deadline: number): Uint8Array =>
  new TextEncoder().encode(`gatehouse/v1\n${tenantId}\n${requestId}\n${upn.toLowerCase()}\n${deadline}`);

// ---- registration (HTTPS, JSON) ---------------------------------------------------------------

const pem = z.string().min(64).max(16384);

/** POST /agent/v1/register: the agent's CSR, its HPKE public key, and one proof of approval. */
export const RegisterRequest = z
  .object({
    /** One-time registration token from the admin center or CLI. */
    token: z.string().min(16).max(256).optional(),
    /** Device code approved by an administrator (RFC 8628 flow). */
    deviceCode: z.string().min(16).max(256).optional(),
    csr: pem,
    /** X25519 public key for HPKE, base64url (32 bytes). */
    hpkePublicKey: b64u.min(43).max(43),
    hostname: z.string().min(1).max(255),
    version: z.string().max(64),
  })
  .refine((r) => (r.token === undefined) !== (r.deviceCode === undefined), {
    message: 'exactly one of token or deviceCode is required',
  });
export type RegisterRequest = z.infer<typeof RegisterRequest>;

export const RegisterResponse = z.object({
  agentId: id,
  tenantId: TenantId,
  /** The agent's certificate, signed by the tenant CA. */
  certificate: pem,
  /** The tenant CA (the agent keeps it to recognise its own certificate chain). */
  tenantCa: pem,
  /** WebSocket URL of the agent gateway (wss://). */
  gatewayUrl: z.string().url(),
});
export type RegisterResponse = z.infer<typeof RegisterResponse>;

/** POST /agent/v1/device/authorize (RFC 8628 section 3.1/3.2). */
export const DeviceAuthorizeRequest = z.object({ tenantId: TenantId, hostname: z.string().min(1).max(255) });
export const DeviceAuthorizeResponse = z.object({
  device_code: z.string(),
  user_code: z.string(),
  verification_uri: z.string().url(),
  verification_uri_complete: z.string().url(),
  expires_in: z.number().int(),
  interval: z.number().int(),
});
export type DeviceAuthorizeResponse = z.infer<typeof DeviceAuthorizeResponse>;

/** POST /agent/v1/renew over mutual TLS: a new CSR and HPKE key, answered with a new certificate. */
export const RenewRequest = z.object({ csr: pem, hpkePublicKey: b64u.min(43).max(43) });
export const RenewResponse = z.object({ certificate: pem });

/** The `error` body of every HTTP error answer. */
export const ErrorBody = z.object({ error: z.string(), message: z.string(), detail: z.unknown().optional() });

/** Parses a frame: JSON, then the schema. Returns null for anything malformed. */
export const parseFrame = <T>(schema: z.ZodType<T>, raw: string): T | null => {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : null;
};
