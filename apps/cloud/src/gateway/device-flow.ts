/**
 * The RFC 8628 device authorization flow on the agent's side: POST /agent/v1/device/authorize
 * issues a device code and a user code (limited, device-limits.ts), and each poll of
 * /agent/v1/register with the device code is answered here until an administrator decides on the
 * approval page (admin/device-approval.ts). Only the SHA-256 of a device code is stored.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { DeviceAuthorizeRequest, type DeviceAuthorizeResponse, GatehouseError } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { CloudContext } from '../context.ts';
import type { Db } from '../db/index.ts';
import { assertAgentCapacity } from '../store/agents.ts';
import {
  deviceCodeByHash,
  insertDeviceCode,
  notePoll,
  useApprovedDeviceCode,
} from '../store/device-codes.ts';
import { getTenant } from '../store/tenants.ts';
import { isUniqueViolation, parse } from '../store/util.ts';
import { type DeviceLimiter, registerDeviceLimits } from './device-limits.ts';

export const DEVICE_CODE_TTL_S = 600;
export const DEVICE_POLL_INTERVAL_S = 5;
/** Timers and networks jitter; a poll this much early is still on time. */
const POLL_SLACK_MS = 250;

/** User codes use letters that cannot be mistaken for each other or spell words (RFC 8628 6.1). */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

/** "bcdf ghjk", "BCDF-GHJK" and "bcdfghjk" all mean BCDF-GHJK; anything else is null. */
export const normalizeUserCode = (input: string): string | null => {
  const letters = input.toUpperCase().replace(/[^A-Z]/g, '');
  if (letters.length !== 8 || [...letters].some((c) => !USER_CODE_ALPHABET.includes(c))) return null;
  return `${letters.slice(0, 4)}-${letters.slice(4)}`;
};

const newUserCode = (): string => {
  let s = '';
  for (let i = 0; i < 8; i++) s += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return `${s.slice(0, 4)}-${s.slice(4)}`;
};

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Where the administrator approves a tenant's codes (RFC 8628 verification_uri). */
export const verificationUri = (publicUrl: string, tenantId: string) =>
  `${publicUrl}/${encodeURIComponent(tenantId)}/agents/device`;

/**
 * One poll (RFC 8628 section 3.5): every answer but "approved" is an error the agent acts on.
 * Approved, the code is used up here, so it registers one agent.
 */
export const redeemDeviceCode = async (
  db: Db,
  deviceCode: string,
  now: number,
): Promise<{ tenantId: string; approvedBy: string }> => {
  const hash = sha256(deviceCode);
  const row = await deviceCodeByHash(db, hash);
  if (!row || row.status === 'used') throw new GatehouseError('registration_token_invalid');
  if (row.expires_at <= now) throw new GatehouseError('expired_token');
  if (row.status === 'denied') throw new GatehouseError('access_denied');
  if (row.status === 'pending') {
    const tooFast =
      row.last_poll_at !== null && now - row.last_poll_at < DEVICE_POLL_INTERVAL_S * 1000 - POLL_SLACK_MS;
    await notePoll(db, hash, now);
    throw new GatehouseError(tooFast ? 'slow_down' : 'authorization_pending');
  }
  // A full tenant is refused before the approval is spent.
  await assertAgentCapacity(db, row.tenant_id);
  // Conditional update: two polls racing with one approved code cannot both register.
  if (!(await useApprovedDeviceCode(db, hash, now))) throw new GatehouseError('registration_token_invalid');
  return { tenantId: row.tenant_id, approvedBy: row.approved_by ?? 'unknown' };
};

const issueDeviceCode = async (
  ctx: CloudContext,
  req: FastifyRequest,
  limits: DeviceLimiter,
): Promise<z.input<typeof DeviceAuthorizeResponse>> => {
  // Counted before anything else, so even malformed requests cost their sender.
  await limits.byAddress(req);
  const body = parse(DeviceAuthorizeRequest, req.body);
  await getTenant(ctx.db, body.tenantId);
  const now = ctx.now();
  await limits.byTenant(req, ctx.db, body.tenantId, now);
  const deviceCode = randomBytes(32).toString('base64url');
  for (let attempt = 0; ; attempt++) {
    const userCode = newUserCode();
    try {
      await insertDeviceCode(
        ctx.db,
        {
          deviceCodeHash: sha256(deviceCode),
          userCode,
          tenantId: body.tenantId,
          hostname: body.hostname,
          requesterIp: req.ip,
          expiresAt: now + DEVICE_CODE_TTL_S * 1000,
        },
        now,
      );
    } catch (err) {
      // A user code already taken: draw another (20^8 codes, so a few tries at most).
      if (isUniqueViolation(err) && attempt < 5) continue;
      throw err;
    }
    const uri = verificationUri(ctx.config.publicUrl, body.tenantId);
    ctx.log.info(
      { part: 'agent-registration', tenantId: body.tenantId, hostname: body.hostname, ip: req.ip },
      'device code issued',
    );
    return {
      device_code: deviceCode,
      user_code: userCode,
      verification_uri: uri,
      verification_uri_complete: `${uri}?user_code=${userCode}`,
      expires_in: DEVICE_CODE_TTL_S,
      interval: DEVICE_POLL_INTERVAL_S,
    };
  }
};

/** POST /agent/v1/device/authorize on `scope` (the registration routes' own, which holds the limits). */
export const registerDeviceFlowRoutes = async (scope: FastifyInstance, ctx: CloudContext): Promise<void> => {
  const limits = await registerDeviceLimits(scope);
  scope.post('/agent/v1/device/authorize', (req, reply) =>
    issueDeviceCode(ctx, req, limits).then((b) => reply.header('cache-control', 'no-store').send(b)),
  );
};
