/**
 * HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-128-GCM, on node:crypto.
 * STUB: signatures are the contract; the implementation is being written.
 */
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
export declare function generateHpkeKeyPair(): HpkeKeyPair;
/** Single-shot seal to `recipientPublicKey` (raw 32 bytes). `info` defaults to "gatehouse/v1 password". */
export declare function hpkeSeal(recipientPublicKey: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, info?: Uint8Array): Sealed;
/** Throws on any failure (wrong key, tampering, wrong aad). */
export declare function hpkeOpen(privateKey: Uint8Array, enc: Uint8Array, ct: Uint8Array, aad: Uint8Array, info?: Uint8Array): Uint8Array;
