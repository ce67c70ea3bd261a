/**
 * The tenant's signing keys as node:crypto KeyObjects, handed to oidc-provider as its
 * ExternalSigningKey. Given plain JWKs, oidc-provider signs through jose, whose Web Crypto path
 * queues every signature as a job: an ES256 ID token costs ~200 us of the event loop that way and
 * ~85 us by crypto.sign on a key imported once (measured in bench/floor.ts). The keys, their
 * rotation and what is published are unchanged (store/signing-keys.ts); only the signing call is.
 *
 * ExternalSigningKey is oidc-provider's hook for keys kept outside it (an HSM, a KMS); it is marked
 * experimental, so the version acknowledged below must be confirmed on each oidc-provider upgrade
 * (the provider refuses to start when the acknowledged version no longer matches).
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign } from 'node:crypto';
import { ExternalSigningKey, type JWK } from 'oidc-provider';

/** The feature switch that lets `jwks` hold these keys. */
export const EXTERNAL_SIGNING = { enabled: true, ack: 'experimental-01' } as const;

const SUPPORTED = new Set(['ES256', 'RS256']);

class LocalSigningKey extends ExternalSigningKey {
  readonly #private: KeyObject;
  readonly #public: KeyObject;
  readonly #ec: boolean;
  readonly #kid: string;
  readonly #alg: string;

  constructor(jwk: JWK) {
    super();
    if (!jwk.alg || !SUPPORTED.has(jwk.alg)) throw new Error(`signing key ${jwk.kid}: alg ${jwk.alg}`);
    this.#private = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    this.#public = createPublicKey(this.#private);
    this.#ec = jwk.kty === 'EC';
    this.#kid = String(jwk.kid);
    this.#alg = jwk.alg;
  }

  override get kid(): string {
    return this.#kid;
  }

  override get alg(): string {
    return this.#alg;
  }

  override keyObject(): KeyObject {
    return this.#public;
  }

  // JWS wants an ECDSA signature as r || s (IEEE P1363), not DER.
  override async sign(data: Uint8Array): Promise<Buffer> {
    return sign('sha256', data, this.#ec ? { key: this.#private, dsaEncoding: 'ieee-p1363' } : this.#private);
  }
}

export const localSigningKeys = (jwks: { keys: JWK[] }): { keys: ExternalSigningKey[] } => ({
  keys: jwks.keys.map((k) => new LocalSigningKey(k)),
});
