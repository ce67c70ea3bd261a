/**
 * Password hashes for cloud-only accounts (on-premises passwords are never stored). scrypt is
 * memory-hard and built into node:crypto, so no native addon is needed. Format:
 * `scrypt$N$r$p$salt$hash` (salt and hash base64url), so parameters can be raised later and old
 * hashes still verify (see needsRehash).
 */
import { randomBytes, type ScryptOptions, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';

export const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 1, saltBytes: 16, keyBytes: 64 } as const;

const scrypt = (password: string, salt: Buffer, keyLen: number, opts: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) =>
    scryptCb(password.normalize('NFC'), salt, keyLen, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );

// 128 * N * r bytes are needed; node's default ceiling (32 MiB) is exactly that, so leave headroom.
const maxmem = (N: number, r: number) => 128 * N * r * 2;

export const hashPassword = async (password: string): Promise<string> => {
  const { N, r, p, saltBytes, keyBytes } = SCRYPT_PARAMS;
  const salt = randomBytes(saltBytes);
  const key = await scrypt(password, salt, keyBytes, { N, r, p, maxmem: maxmem(N, r) });
  return ['scrypt', N, r, p, salt.toString('base64url'), key.toString('base64url')].join('$');
};

interface Parsed {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

const parseHash = (stored: string): Parsed | null => {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  // Bounds keep a tampered row from asking for gigabytes of memory.
  if (!Number.isInteger(Math.log2(N)) || N < 2 ** 10 || N > 2 ** 20 || r < 1 || r > 32 || p < 1 || p > 16)
    return null;
  const salt = Buffer.from(parts[4]!, 'base64url');
  const key = Buffer.from(parts[5]!, 'base64url');
  if (salt.length < 8 || key.length < 32) return null;
  return { N, r, p, salt, key };
};

/** Constant-time comparison; a malformed hash never verifies. */
export const verifyPassword = async (password: string, stored: string): Promise<boolean> => {
  const h = parseHash(stored);
  if (!h) return false;
  const key = await scrypt(password, h.salt, h.key.length, {
    N: h.N,
    r: h.r,
    p: h.p,
    maxmem: maxmem(h.N, h.r),
  });
  return timingSafeEqual(key, h.key);
};

/** True when the hash was made with other parameters than today's (rehash after a successful sign-in). */
export const needsRehash = (stored: string): boolean => {
  const h = parseHash(stored);
  const { N, r, p, keyBytes, saltBytes } = SCRYPT_PARAMS;
  return (
    !h || h.N !== N || h.r !== r || h.p !== p || h.key.length !== keyBytes || h.salt.length !== saltBytes
  );
};

/**
 * A hash of a random password nobody knows, made with today's parameters. Verifying against it
 * costs what a real check costs, so an unknown user name takes as long as a wrong password.
 */
export const DUMMY_HASH =
  'scrypt$32768$8$1$-1qbFWZeRtz1A868ZSxvOg$O0sYz58Cvn5STVDnGi4hsVBmnF_4xm8a3wDiV7AmBjfs68EVQ8PVPukMp6sLYHuJ5m711WrvpZHM_g_Cx02ALg';
