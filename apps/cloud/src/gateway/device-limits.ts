/**
 * Limits on device authorization (POST /agent/v1/device/authorize), which anyone may call: each
 * code puts a host name of the requester's choosing in front of an approver, so a flood of them is
 * a phishing tool. Three limits, each answered with `rate_limited` and Retry-After:
 *
 * - per client address and per tenant, a fixed window counted by @fastify/rate-limit in this
 *   process (its store is an LRU of bounded size, so random addresses cannot grow memory). In the
 *   scale-out shape each node counts its own, so N nodes allow N times the figure;
 * - pending codes per tenant, counted in the database, so it holds across nodes (concurrent
 *   requests on PostgreSQL may pass the count together: at most the number in flight beyond it).
 */
import rateLimit from '@fastify/rate-limit';
import { GatehouseError } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Db } from '../db/index.ts';
import { pendingDeviceCodes } from '../store/device-codes.ts';

export const DEVICE_LIMITS = {
  /** Requests per client address (IPv6: per /64, the plugin's default grouping) per window. */
  perAddress: 10,
  /** Codes issued per tenant per window, by this node. */
  perTenant: 20,
  windowMs: 10 * 60_000,
  /** Codes awaiting a decision per tenant, across nodes. */
  pendingPerTenant: 10,
  /** Distinct keys the in-process counters remember (least recently used go first). */
  trackedKeys: 10_000,
} as const;

export interface DeviceLimiter {
  /** Counts this request against its address; throws rate_limited beyond the limit. */
  byAddress(req: FastifyRequest): Promise<void>;
  /** Counts a code for an existing tenant against the tenant's limits; throws rate_limited beyond them. */
  byTenant(req: FastifyRequest, db: Db, tenantId: string, now: number): Promise<void>;
}

/** `retryAfterS` in the detail is what the app's error serializer turns into Retry-After (web/errors.ts). */
const limited = (retryAfterS: number, limit: string) =>
  new GatehouseError('rate_limited', { limit, retryAfterS: Math.max(1, Math.ceil(retryAfterS)) });

/** Registers the counters on `scope` (the registration routes' own scope). */
export const registerDeviceLimits = async (scope: FastifyInstance): Promise<DeviceLimiter> => {
  await scope.register(rateLimit, { global: false, cache: DEVICE_LIMITS.trackedKeys });
  const address = scope.createRateLimit({
    max: DEVICE_LIMITS.perAddress,
    timeWindow: DEVICE_LIMITS.windowMs,
  });
  // Called only after the body was validated and the tenant found, so every key is a real tenant.
  const tenant = scope.createRateLimit({
    max: DEVICE_LIMITS.perTenant,
    timeWindow: DEVICE_LIMITS.windowMs,
    keyGenerator: (req) => `tenant:${String((req.body as { tenantId?: unknown }).tenantId)}`,
  });
  return {
    async byAddress(req) {
      const r = await address(req);
      if (!r.isAllowed && r.isExceeded) throw limited(r.ttlInSeconds, 'address');
    },
    async byTenant(req, db, tenantId, now) {
      const pending = await pendingDeviceCodes(db, tenantId, now);
      if (pending.count >= DEVICE_LIMITS.pendingPerTenant) {
        throw limited(((pending.firstExpiry ?? now) - now) / 1000, 'pending');
      }
      const r = await tenant(req);
      if (!r.isAllowed && r.isExceeded) throw limited(r.ttlInSeconds, 'tenant');
    },
  };
};
