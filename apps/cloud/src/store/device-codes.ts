/**
 * Device codes of the agents' RFC 8628 registration flow: what is asked for, and the pending
 * ones an approver may see. Anyone may ask for a code, so these queries are what bounds the flow:
 * a tenant's pending codes are counted before a new one is made.
 */
import type { Db } from '../db/index.ts';

export interface NewDeviceCode {
  deviceCodeHash: string;
  userCode: string;
  tenantId: string;
  hostname: string;
  requesterIp: string;
  expiresAt: number;
}

export const insertDeviceCode = async (db: Db, c: NewDeviceCode, now: number): Promise<void> => {
  await db
    .insertInto('device_codes')
    .values({
      device_code_hash: c.deviceCodeHash,
      user_code: c.userCode,
      tenant_id: c.tenantId,
      hostname: c.hostname,
      expires_at: c.expiresAt,
      status: 'pending',
      approved_by: null,
      last_poll_at: null,
      requester_ip: c.requesterIp,
      requested_at: now,
    })
    .execute();
};

/** The tenant's codes still awaiting a decision, and when the first of them lapses. */
export const pendingDeviceCodes = async (
  db: Db,
  tenantId: string,
  now: number,
): Promise<{ count: number; firstExpiry: number | null }> => {
  const r = await db
    .selectFrom('device_codes')
    .select((eb) => [eb.fn.countAll<number | string>().as('n'), eb.fn.min('expires_at').as('first')])
    .where('tenant_id', '=', tenantId)
    .where('status', '=', 'pending')
    .where('expires_at', '>', now)
    .executeTakeFirst();
  const first = r?.first;
  return {
    count: Number(r?.n ?? 0),
    firstExpiry: first === null || first === undefined ? null : Number(first),
  };
};

export interface PendingDeviceCode {
  /** The requester's own claim: nothing checks it. */
  hostname: string;
  requesterIp: string | null;
  requestedAt: number | null;
}

/** A pending, unexpired code by its user code, as the approval page shows it. */
export const findPendingDeviceCode = async (
  db: Db,
  tenantId: string,
  userCode: string,
  now: number,
): Promise<PendingDeviceCode | undefined> => {
  const row = await db
    .selectFrom('device_codes')
    .select(['hostname', 'requester_ip', 'requested_at'])
    .where('user_code', '=', userCode)
    .where('tenant_id', '=', tenantId)
    .where('status', '=', 'pending')
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    hostname: row.hostname,
    requesterIp: row.requester_ip,
    requestedAt: row.requested_at === null ? null : Number(row.requested_at),
  };
};
