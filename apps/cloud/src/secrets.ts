/**
 * Secrets at rest (tenant CA keys, OIDC signing keys, cookie keys) are sealed with AES-256-GCM
 * under a key from configuration, so a copy of the database alone reveals none of them.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';

export interface SecretBox {
  seal(plaintext: string, context: string): string;
  open(sealed: string, context: string): string;
  /** A keyed hash (HMAC-SHA256 under a subkey for `context`): stable, and useless without the key. */
  mac(data: string, context: string): string;
}

const VERSION = 'v1';

export const createSecretBox = (key: Buffer): SecretBox => {
  if (key.length !== 32) throw new TypeError('secret key must be 32 bytes');
  // KeyObjects: createHmac with a Buffer key costs several times more per call (Node 24), and
  // smart lockout takes two or three MACs per sign-in.
  const subkeys = new Map<string, KeyObject>();
  // Likewise for AES-GCM: every OIDC row is sealed and opened (db/at-rest.ts); a KeyObject costs
  // about a third of a raw key per call (bench/oidc-at-rest.ts).
  const aesKey = createSecretKey(key);
  const subkey = (context: string) => {
    let k = subkeys.get(context);
    if (!k) {
      k = createSecretKey(
        Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `gatehouse mac ${context}`, 32)),
      );
      subkeys.set(context, k);
    }
    return k;
  };
  return {
    mac: (data, context) => createHmac('sha256', subkey(context)).update(data).digest('base64url'),
    // `context` (e.g. "tenant-ca:<id>") is bound as associated data so sealed values cannot be swapped.
    seal(plaintext, context) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', aesKey, iv);
      c.setAAD(Buffer.from(context));
      const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
      return [
        VERSION,
        iv.toString('base64url'),
        ct.toString('base64url'),
        c.getAuthTag().toString('base64url'),
      ].join('.');
    },
    open(sealed, context) {
      const [v, iv, ct, tag] = sealed.split('.');
      if (v !== VERSION || !iv || !ct || !tag) throw new Error('sealed secret has an unknown format');
      const d = createDecipheriv('aes-256-gcm', aesKey, Buffer.from(iv, 'base64url'));
      d.setAAD(Buffer.from(context));
      d.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()]).toString('utf8');
    },
  };
};
