/**
 * One-time agent registration tokens for unattended installs. Only a SHA-256 of the token is
 * stored, so a copy of the database cannot register an agent.
 */
import { createHash, randomBytes } from 'node:crypto';
import { GatehouseError, TenantId } from '@gatehouse/protocol';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import { parse } from './util.ts';

export const REGISTRATION_TOKEN_PREFIX = 'ghr_';

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export const CreateRegistrationTokenInput = z.object({
  tenantId: TenantId,
  createdBy: z.string().min(1).max(256),
  ttlS: z
    .number()
    .int()
    .min(30)
    .max(7 * 86_400),
  now: z.number().int().nonnegative(),
});

export const createRegistrationToken = async (
  db: Db,
  tenantId: string,
  createdBy: string,
  ttlS: number,
  now: number,
): Promise<{ token: string; expiresAt: number }> => {
  const i = parse(CreateRegistrationTokenInput, { tenantId, createdBy, ttlS, now });
  const token = `${REGISTRATION_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const expiresAt = i.now + i.ttlS * 1000;
  await db
    .insertInto('registration_tokens')
    .values({
      token_hash: hashToken(token),
      tenant_id: i.tenantId,
      created_by: i.createdBy,
      expires_at: expiresAt,
      used_at: null,
    })
    .execute();
  return { token, expiresAt };
};

/** The tenant of a token that is still usable, without using it up; registration_token_invalid otherwise. */
export const peekRegistrationToken = async (db: Db, token: string, now: number): Promise<string> => {
  if (typeof token !== 'string' || !token.startsWith(REGISTRATION_TOKEN_PREFIX) || token.length > 256) {
    throw new GatehouseError('registration_token_invalid');
  }
  const row = await db
    .selectFrom('registration_tokens')
    .select('tenant_id')
    .where('token_hash', '=', hashToken(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (!row) throw new GatehouseError('registration_token_invalid');
  return row.tenant_id;
};

/**
 * Uses a token up, atomically (one conditional UPDATE, so two registrations racing with the same
 * token cannot both win), and returns its tenant. Unknown, expired and used tokens are alike to
 * the caller: registration_token_invalid.
 */
export const consumeRegistrationToken = async (db: Db, token: string, now: number): Promise<string> => {
  if (typeof token !== 'string' || !token.startsWith(REGISTRATION_TOKEN_PREFIX) || token.length > 256) {
    throw new GatehouseError('registration_token_invalid');
  }
  const row = await db
    .updateTable('registration_tokens')
    .set({ used_at: now })
    .where('token_hash', '=', hashToken(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returning('tenant_id')
    .executeTakeFirst();
  if (!row) throw new GatehouseError('registration_token_invalid');
  return row.tenant_id;
};
