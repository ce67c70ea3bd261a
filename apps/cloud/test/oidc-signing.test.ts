/**
 * Signing keys handed to oidc-provider as KeyObjects (oidc/signing.ts): a token they sign verifies
 * with the key as published, in JWS form, and what the provider publishes of them is public only.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { CompactSign, compactVerify, importJWK, type JWK } from 'jose';
import Provider from 'oidc-provider';
import { EXTERNAL_SIGNING, localSigningKeys } from '../src/oidc/signing.ts';

const jwkOf = (alg: 'ES256' | 'RS256', kid: string): JWK => {
  const { privateKey } =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...(privateKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' };
};

test('ES256 and RS256 signatures verify against the public key, as JWS signatures', async () => {
  for (const alg of ['ES256', 'RS256'] as const) {
    const jwk = jwkOf(alg, `k-${alg}`);
    const [key] = localSigningKeys({ keys: [jwk] }).keys;
    assert.ok(key);
    const header = Buffer.from(JSON.stringify({ alg, kid: key.kid })).toString('base64url');
    const body = Buffer.from('{"sub":"x"}').toString('base64url');
    const sig = Buffer.from(await key.sign(Buffer.from(`${header}.${body}`))).toString('base64url');
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
    const verified = await compactVerify(`${header}.${body}.${sig}`, await importJWK(pub, alg));
    assert.equal(Buffer.from(verified.payload).toString(), '{"sub":"x"}');
    if (alg === 'ES256') assert.equal(Buffer.from(sig, 'base64url').length, 64, 'r || s, not DER');
    // And jose's own signature of the same input verifies the same way (the format matches).
    const jose = await new CompactSign(Buffer.from('{"sub":"x"}'))
      .setProtectedHeader({ alg, kid: key.kid })
      .sign(await importJWK(jwk, alg));
    await compactVerify(jose, await importJWK(pub, alg));
  }
});

test('the provider publishes the keys with no private part (oidc-flows.test.ts verifies its ID tokens)', async () => {
  const keys = [jwkOf('ES256', 'es'), jwkOf('RS256', 'rs')];
  const provider = new Provider('https://issuer.test', {
    jwks: localSigningKeys({ keys }),
    features: { devInteractions: { enabled: false }, externalSigningSupport: EXTERNAL_SIGNING },
  });
  const server = provider.listen(0);
  try {
    await new Promise((r) => server.once('listening', r));
    const { port } = server.address() as { port: number };
    const published = (await (await fetch(`http://127.0.0.1:${port}/jwks`)).json()) as { keys: JWK[] };
    assert.deepEqual(published.keys.map((k) => k.kid).sort(), ['es', 'rs']);
    for (const k of published.keys)
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k[secret as keyof JWK], undefined);
  } finally {
    server.close();
  }
});
