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

/** A code's whole row, by the hash of its device code (the agent's polling). */
export const deviceCodeByHash = (db: Db, deviceCodeHash: string) =>
  db.selectFrom('device_codes').selectAll().where('device_code_hash', '=', deviceCodeHash).executeTakeFirst();

/** A tenant's code by its user code, whatever its status (the approver's decision). */
export const deviceCodeByUserCode = (db: Db, tenantId: string, userCode: string) =>
  db
    .selectFrom('device_codes')
    .selectAll()
    .where('user_code', '=', userCode)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();

/** Remembers when the agent last polled a pending code (RFC 8628 slow_down). */
export const notePoll = async (db: Db, deviceCodeHash: string, now: number): Promise<void> => {
  await db
    .updateTable('device_codes')
    .set({ last_poll_at: now })
    .where('device_code_hash', '=', deviceCodeHash)
    .execute();
};

/**
 * Spends an approved code; false when it was not (or no longer) approved. Conditional update:
 * two polls racing with one approved code cannot both register.
 */
export const useApprovedDeviceCode = async (
  db: Db,
  deviceCodeHash: string,
  now: number,
): Promise<boolean> => {
  const r = await db
    .updateTable('device_codes')
    .set({ status: 'used', last_poll_at: now })
    .where('device_code_hash', '=', deviceCodeHash)
    .where('status', '=', 'approved')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
};

/** Approves or denies a pending code; false when it was no longer pending. */
export const decideDeviceCode = async (
  db: Db,
  deviceCodeHash: string,
  approved: boolean,
  approvedBy: string,
): Promise<boolean> => {
  const r = await db
    .updateTable('device_codes')
    .set({ status: approved ? 'approved' : 'denied', approved_by: approvedBy })
    .where('device_code_hash', '=', deviceCodeHash)
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
};

/** Deletes codes that expired before `before`: anyone may ask for one, so old rows must not pile up. */
export const pruneDeviceCodes = async (db: Db, before: number): Promise<void> => {
  await db.deleteFrom('device_codes').where('expires_at', '<', before).execute();
};
