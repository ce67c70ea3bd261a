/**
 * HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-128-GCM, on node:crypto.
 *
 * Written on node:crypto rather than @hpke/core because the latter costs ~10x more CPU per seal on
 * the sign-in hot path (see DESIGN.md "Measured caveats" and bench/hpke.ts). @hpke/core stays in
 * the tests as the interoperability oracle, next to RFC 9180's Appendix A.1.1 vector.
 * Only single-shot seal/open (sequence number 0) is implemented: each envelope carries one secret.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
  timingSafeEqual,
} from 'node:crypto';
import { GatehouseError } from './errors.ts';

export interface HpkeKeyPair {
  /** Raw 32-byte X25519 public key. */
  publicKey: Uint8Array;
  /** Raw 32-byte X25519 private key. */
  privateKey: Uint8Array;
}
export interface Sealed {
  enc: Uint8Array;
  ct: Uint8Array;
}

const N = 32; // Nsecret, Nenc, Npk, Nsk and Nh are all 32 for this suite
const NK = 16;
const NN = 12;
const NT = 16;
const MODE_BASE = 0;

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const HPKE_V1 = bytes('HPKE-v1');
const KEM_SUITE = Buffer.from([0x4b, 0x45, 0x4d, 0x00, 0x20]); // "KEM" || I2OSP(0x0020, 2)
const HPKE_SUITE = Buffer.from([0x48, 0x50, 0x4b, 0x45, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01]);
const EMPTY = Buffer.alloc(0);
const ONE = Buffer.from([1]);
// RFC 5869: an absent salt is HashLen zero bytes. Public constant, so it is built once.
const ZERO_SALT = createSecretKey(Buffer.alloc(N));

const DEFAULT_INFO = bytes('gatehouse/v1 password');

function labeledExtract(salt: KeyObject, suite: Buffer, label: Buffer, ikm: Uint8Array): Buffer {
  // A KeyObject key: createHmac with a plain Buffer key costs ~4x more per call (Node 24).
  return createHmac('sha256', salt).update(HPKE_V1).update(suite).update(label).update(ikm).digest();
}

/** Expand for L <= Nh: a single HMAC block T(1). */
function labeledExpand(
  prk: KeyObject,
  suite: Buffer,
  label: Buffer,
  info: Uint8Array,
  length: number,
): Buffer {
  const head = Buffer.from([length >> 8, length & 0xff]);
  const t1 = createHmac('sha256', prk).update(head).update(HPKE_V1).update(suite).update(label).update(info);
  return t1.update(ONE).digest().subarray(0, length);
}

const L_EAE_PRK = bytes('eae_prk');
const L_SHARED_SECRET = bytes('shared_secret');
const L_PSK_ID_HASH = bytes('psk_id_hash');
const L_INFO_HASH = bytes('info_hash');
const L_SECRET = bytes('secret');
const L_KEY = bytes('key');
const L_BASE_NONCE = bytes('base_nonce');

// key_schedule_context = mode || psk_id_hash || info_hash; public, so cached for the default info.
const PSK_ID_HASH = labeledExtract(ZERO_SALT, HPKE_SUITE, L_PSK_ID_HASH, EMPTY);
function keyScheduleContext(info: Uint8Array): Buffer {
  const infoHash = labeledExtract(ZERO_SALT, HPKE_SUITE, L_INFO_HASH, info);
  return Buffer.concat([Buffer.from([MODE_BASE]), PSK_ID_HASH, infoHash]);
}
const DEFAULT_CONTEXT = keyScheduleContext(DEFAULT_INFO);

function contextFor(info: Uint8Array | undefined): Buffer {
  return info === undefined || DEFAULT_INFO.equals(info) ? DEFAULT_CONTEXT : keyScheduleContext(info);
}

/** DHKEM ExtractAndExpand: kem_context = enc || pkRm. */
function kemSharedSecret(dhOut: Buffer, enc: Uint8Array, pkR: Uint8Array): KeyObject {
  const eaePrk = createSecretKey(labeledExtract(ZERO_SALT, KEM_SUITE, L_EAE_PRK, dhOut));
  const kemContext = Buffer.concat([enc, pkR], 2 * N);
  return createSecretKey(labeledExpand(eaePrk, KEM_SUITE, L_SHARED_SECRET, kemContext, N));
}

/** KeyScheduleS/R for base mode (psk = psk_id = ""): returns key and base_nonce. */
function keySchedule(sharedSecret: KeyObject, context: Buffer): { key: Buffer; nonce: Buffer } {
  const secret = createSecretKey(labeledExtract(sharedSecret, HPKE_SUITE, L_SECRET, EMPTY));
  return {
    key: labeledExpand(secret, HPKE_SUITE, L_KEY, context, NK),
    nonce: labeledExpand(secret, HPKE_SUITE, L_BASE_NONCE, context, NN),
  };
}

// Raw key import/export ('raw-public', 'raw-private') is ~15 us cheaper per seal than DER, but newer
// than Node 24.0; DER (RFC 8410 prefixes) is the fallback on runtimes without it.
const RAW_KEYS = (() => {
  try {
    createPublicKey({ key: Buffer.alloc(N, 9), format: 'raw-public', asymmetricKeyType: 'x25519' });
    return true;
  } catch {
    return false;
  }
})();
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * Node 24's createPublicKey/createPrivateKey first ask whether the options object is a KeyObject,
 * and that check throws and catches an internal error: the stack trace it captures is ~18 us of a
 * ~26 us public key import, paid for every envelope the agent opens. Without a stack the import
 * costs ~8 us. The limit is restored before anything else can run (all synchronous), and an error
 * the import itself throws is wrapped by the callers (hpkeOpen's one outcome, or validation_failed).
 */
function withoutStacks<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  const key = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return withoutStacks(() =>
    RAW_KEYS
      ? createPublicKey({ key, format: 'raw-public', asymmetricKeyType: 'x25519' })
      : createPublicKey({ key: Buffer.concat([SPKI_PREFIX, key]), format: 'der', type: 'spki' }),
  );
}
function privateKeyObject(raw: Uint8Array): KeyObject {
  const key = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return withoutStacks(() =>
    RAW_KEYS
      ? createPrivateKey({ key, format: 'raw-private', asymmetricKeyType: 'x25519' })
      : createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, key]), format: 'der', type: 'pkcs8' }),
  );
}
function rawPublic(key: KeyObject): Buffer {
  return RAW_KEYS
    ? key.export({ format: 'raw-public' })
    : key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
}
function rawPrivate(key: KeyObject): Buffer {
  return RAW_KEYS
    ? key.export({ format: 'raw-private' })
    : key.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
}

// Recipients are the few agents of each tenant and their keys are public: keep their imported
// KeyObjects (an import costs ~20 us, as much as the X25519 exchange). Bounded; reset when full.
const recipientKeys = new Map<string, KeyObject>();
const RECIPIENT_CACHE_MAX = 4096;
function recipientKeyObject(raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  let key = recipientKeys.get(id);
  if (key === undefined) {
    key = publicKeyObject(raw);
    if (recipientKeys.size >= RECIPIENT_CACHE_MAX) recipientKeys.clear();
    recipientKeys.set(id, key);
  }
  return key;
}

/** X25519 with RFC 9180's all-zero check; OpenSSL refuses small-order points itself, this makes it explicit. */
function dh(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  let out: Buffer;
  try {
    out = diffieHellman({ privateKey, publicKey });
  } catch (err) {
    throw new GatehouseError('validation_failed', 'X25519 failed (small-order public key?)', { cause: err });
  }
  if (out.every((b) => b === 0))
    throw new GatehouseError('validation_failed', 'X25519 small-order public key');
  return out;
}

export function generateHpkeKeyPair(): HpkeKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return {
    publicKey: rawPublic(publicKey),
    privateKey: rawPrivate(privateKey),
  };
}

/** The raw public key of a raw X25519 private key (the agent re-derives it rather than storing it twice). */
export function hpkePublicKey(privateKey: Uint8Array): Uint8Array {
  if (privateKey.length !== N)
    throw new GatehouseError('validation_failed', 'HPKE private key must be 32 bytes');
  return rawPublic(createPublicKey(privateKeyObject(privateKey)));
}

/**
 * Seal with a given ephemeral key. Internal: used by hpkeSeal with a fresh key, and by the tests
 * to replay RFC 9180's deterministic vector. Not exported from index.ts.
 */
export function sealWithEphemeral(
  ephemeral: { publicKey: Uint8Array; privateKey: KeyObject | Uint8Array },
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  info?: Uint8Array,
): Sealed & { sharedSecret: Buffer; key: Buffer; nonce: Buffer } {
  if (recipientPublicKey.length !== N) {
    throw new GatehouseError('validation_failed', 'HPKE recipient public key must be 32 bytes');
  }
  const skE =
    ephemeral.privateKey instanceof Uint8Array
      ? privateKeyObject(ephemeral.privateKey)
      : ephemeral.privateKey;
  const dhOut = dh(skE, recipientKeyObject(recipientPublicKey));
  const sharedSecret = kemSharedSecret(dhOut, ephemeral.publicKey, recipientPublicKey);
  const { key, nonce } = keySchedule(sharedSecret, contextFor(info));
  // KeyObject keys again: a Buffer key costs createCipheriv ~10 us more (Node 24).
  const cipher = createCipheriv('aes-128-gcm', createSecretKey(key), nonce);
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  cipher.final();
  const ct = Buffer.concat([body, cipher.getAuthTag()], body.length + NT);
  return { enc: ephemeral.publicKey, ct, sharedSecret: sharedSecret.export(), key, nonce };
}

/** Single-shot seal to `recipientPublicKey` (raw 32 bytes). `info` defaults to "gatehouse/v1 password". */
export function hpkeSeal(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  info?: Uint8Array,
): Sealed {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const { enc, ct } = sealWithEphemeral(
    { publicKey: rawPublic(publicKey), privateKey },
    recipientPublicKey,
    plaintext,
    aad,
    info,
  );
  return { enc, ct };
}

// An agent opens every request with the same one or two private keys: importing one and deriving its
// public key costs ~40 us, a third of an open. Cached by the caller's array, and only while its
// bytes are unchanged (a copy is compared in constant time), so a wiped or reused array is re-imported.
const privateKeys = new WeakMap<Uint8Array, { copy: Buffer; skR: KeyObject; pkR: Buffer }>();
function recipientPrivate(privateKey: Uint8Array): { skR: KeyObject; pkR: Buffer } {
  const hit = privateKeys.get(privateKey);
  if (hit && timingSafeEqual(hit.copy, privateKey)) return hit;
  const skR = privateKeyObject(privateKey);
  const entry = { copy: Buffer.from(privateKey), skR, pkR: rawPublic(createPublicKey(skR)) };
  privateKeys.set(privateKey, entry);
  return entry;
}

/** Throws GatehouseError('agent_decrypt_failed') on any failure (wrong key, tampering, wrong aad). */
export function hpkeOpen(
  privateKey: Uint8Array,
  enc: Uint8Array,
  ct: Uint8Array,
  aad: Uint8Array,
  info?: Uint8Array,
): Uint8Array {
  if (privateKey.length !== N) throw new GatehouseError('agent_no_key', 'HPKE private key must be 32 bytes');
  if (enc.length !== N || ct.length < NT) {
    throw new GatehouseError('agent_decrypt_failed', 'malformed HPKE envelope');
  }
  try {
    const { skR, pkR } = recipientPrivate(privateKey);
    const dhOut = dh(skR, publicKeyObject(enc));
    const sharedSecret = kemSharedSecret(dhOut, enc, pkR);
    const { key, nonce } = keySchedule(sharedSecret, contextFor(info));
    const decipher = createDecipheriv('aes-128-gcm', createSecretKey(key), nonce, { authTagLength: NT });
    decipher.setAAD(aad);
    decipher.setAuthTag(ct.subarray(ct.length - NT));
    const head = decipher.update(ct.subarray(0, ct.length - NT));
    const tail = decipher.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch (err) {
    // One outcome for every failure: the caller must not learn which step rejected the envelope.
    throw new GatehouseError('agent_decrypt_failed', 'HPKE open failed', { cause: err });
  }
}
