/**
 * How bearer secrets are kept in the database, in one place for the code that writes them (client
 * directory, OIDC adapter) and the migration that converted rows written before. The rule: a copy
 * of the database holds nothing that can be presented to the cloud, and nothing that points to it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { SecretBox } from '../secrets.ts';

const SECRET_HASH_PREFIX = 'sha256:';

/**
 * Client secrets are 256 random bits made by the cloud, never chosen by a person, so a plain
 * SHA-256 cannot be reversed or guessed; a slow or salted hash would only add cost to every token
 * request. Unkeyed (unlike the OIDC rows below) so the directory, the CLI and the migration need no
 * secret key to write or convert one, as with registration tokens and device codes.
 */
export const hashClientSecret = (secret: string): string =>
  `${SECRET_HASH_PREFIX}${createHash('sha256').update(secret, 'utf8').digest('base64url')}`;

export const isHashedClientSecret = (stored: string): boolean => stored.startsWith(SECRET_HASH_PREFIX);

/** Constant-time check of a presented secret against the stored hash. */
export const clientSecretMatches = (presented: unknown, stored: unknown): boolean => {
  if (typeof presented !== 'string' || typeof stored !== 'string' || !isHashedClientSecret(stored))
    return false;
  const a = Buffer.from(hashClientSecret(presented));
  const b = Buffer.from(stored);
  return a.length === b.length && timingSafeEqual(a, b);
};

/**
 * oidc-provider keys most models by a bearer value (access and refresh tokens, codes, session
 * cookies) and hands the adapter that raw value on every lookup, so rows live under a keyed hash
 * of it. Keyed (HMAC under the secret key) rather than a plain hash: a reader of the database who
 * holds some token cannot even confirm it is there. The lookup columns get the same treatment.
 */
export const oidcKeys = (box: SecretBox) => ({
  id: (id: string) => box.mac(id, 'oidc-id'),
  uid: (uid: string) => box.mac(uid, 'oidc-uid'),
  userCode: (code: string) => box.mac(code, 'oidc-user-code'),
  grantId: (grantId: string) => box.mac(grantId, 'oidc-grant'),
});

/**
 * Payloads reference other bearer values (`jti` is the id itself; an Interaction carries its
 * session's cookie value), and a future oidc-provider may add more: sealing the whole payload
 * covers them all, rather than stripping the fields known today. The associated data binds a
 * payload to its row, so one copied under another tenant, model or id does not open.
 */
const payloadContext = (tenantId: string, model: string, hashedId: string) =>
  `oidc-payload:${tenantId}:${model}:${hashedId}`;

export const sealOidcPayload = (
  box: SecretBox,
  row: { tenantId: string; model: string; hashedId: string },
  payload: object,
): string => box.seal(JSON.stringify(payload), payloadContext(row.tenantId, row.model, row.hashedId));

export const openOidcPayload = (
  box: SecretBox,
  row: { tenantId: string; model: string; hashedId: string },
  sealed: string,
): Record<string, unknown> =>
  JSON.parse(box.open(sealed, payloadContext(row.tenantId, row.model, row.hashedId)));
