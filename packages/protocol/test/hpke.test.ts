import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { GatehouseError } from '../src/errors.ts';
import { generateHpkeKeyPair, hpkeOpen, hpkePublicKey, hpkeSeal, sealWithEphemeral } from '../src/hpke.ts';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const DEFAULT_INFO = utf8('gatehouse/v1 password');

// RFC 9180 Appendix A.1.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, Base), sequence 0.
const A11 = {
  info: hex('4f6465206f6e2061204772656369616e2055726e'),
  pkEm: hex('37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431'),
  skEm: hex('52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736'),
  pkRm: hex('3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d'),
  skRm: hex('4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8'),
  sharedSecret: hex('fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc'),
  key: hex('4531685d41d65f03dc48f6b8302c05b0'),
  baseNonce: hex('56d890e5accaaf011cff4b7d'),
  pt: hex('4265617574792069732074727574682c20747275746820626561757479'),
  aad: hex('436f756e742d30'),
  ct: hex('f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a'),
};

const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes128Gcm(),
});
const copy = (b: Uint8Array): ArrayBuffer => new Uint8Array(b).buffer;

test('RFC 9180 A.1.1: key derivation and first encryption match the published vector', () => {
  assert.deepEqual(Buffer.from(hpkePublicKey(A11.skRm)), A11.pkRm);
  assert.deepEqual(Buffer.from(hpkePublicKey(A11.skEm)), A11.pkEm);
  const sealed = sealWithEphemeral(
    { publicKey: A11.pkEm, privateKey: A11.skEm },
    A11.pkRm,
    A11.pt,
    A11.aad,
    A11.info,
  );
  assert.equal(sealed.sharedSecret.toString('hex'), A11.sharedSecret.toString('hex'));
  assert.equal(sealed.key.toString('hex'), A11.key.toString('hex'));
  assert.equal(sealed.nonce.toString('hex'), A11.baseNonce.toString('hex'));
  assert.deepEqual(Buffer.from(sealed.enc), A11.pkEm);
  assert.equal(Buffer.from(sealed.ct).toString('hex'), A11.ct.toString('hex'));
  assert.deepEqual(Buffer.from(hpkeOpen(A11.skRm, A11.pkEm, A11.ct, A11.aad, A11.info)), A11.pt);
});

test('generated key pairs are 32-byte raw X25519 keys and round-trip', () => {
  const kp = generateHpkeKeyPair();
  assert.equal(kp.publicKey.length, 32);
  assert.equal(kp.privateKey.length, 32);
  assert.deepEqual(Buffer.from(hpkePublicKey(kp.privateKey)), Buffer.from(kp.publicKey));
  const a = hpkeSeal(kp.publicKey, utf8('correct horse'), utf8('aad'));
  const b = hpkeSeal(kp.publicKey, utf8('correct horse'), utf8('aad'));
  assert.notDeepEqual(Buffer.from(a.enc), Buffer.from(b.enc), 'each seal uses a fresh ephemeral key');
  assert.equal(a.ct.length, 'correct horse'.length + 16);
  assert.equal(Buffer.from(hpkeOpen(kp.privateKey, a.enc, a.ct, utf8('aad'))).toString(), 'correct horse');
  assert.equal(
    Buffer.from(hpkeOpen(kp.privateKey, b.enc, b.ct, utf8('aad'), DEFAULT_INFO)).toString(),
    'correct horse',
  );
});

test('interop: our seal opens with @hpke/core, and theirs opens with ours', async () => {
  const kp = generateHpkeKeyPair();
  const recipientKey = await suite.kem.deserializePrivateKey(copy(kp.privateKey));
  const recipientPublicKey = await suite.kem.deserializePublicKey(copy(kp.publicKey));
  const aad = utf8('tenant|request|user|deadline');
  for (const pt of [utf8(''), utf8('pässwörd 🔑'), Buffer.alloc(5000, 7)]) {
    const ours = hpkeSeal(kp.publicKey, pt, aad);
    const opened = await suite.open(
      { recipientKey, enc: copy(ours.enc), info: DEFAULT_INFO },
      copy(ours.ct),
      aad,
    );
    assert.deepEqual(Buffer.from(opened), pt);

    const theirs = await suite.seal({ recipientPublicKey, info: DEFAULT_INFO }, pt, aad);
    const mine = hpkeOpen(kp.privateKey, new Uint8Array(theirs.enc), new Uint8Array(theirs.ct), aad);
    assert.deepEqual(Buffer.from(mine), pt);
  }
  // A non-default info must agree too.
  const info = utf8('other context');
  const ours = hpkeSeal(kp.publicKey, utf8('x'), aad, info);
  const opened = await suite.open({ recipientKey, enc: copy(ours.enc), info }, copy(ours.ct), aad);
  assert.equal(Buffer.from(opened).toString(), 'x');
});

test('tampering, wrong aad, wrong info and wrong key all throw agent_decrypt_failed', () => {
  const kp = generateHpkeKeyPair();
  const other = generateHpkeKeyPair();
  const aad = utf8('aad');
  const { enc, ct } = hpkeSeal(kp.publicKey, utf8('secret'), aad);
  const decryptFailed = (fn: () => unknown): void =>
    assert.throws(fn, (e: unknown) => e instanceof GatehouseError && e.code === 'agent_decrypt_failed');

  for (let i = 0; i < ct.length; i++) {
    const bad = Buffer.from(ct);
    bad[i] ^= 0x01;
    decryptFailed(() => hpkeOpen(kp.privateKey, enc, bad, aad));
  }
  const badEnc = Buffer.from(enc);
  badEnc[0] ^= 0x01;
  decryptFailed(() => hpkeOpen(kp.privateKey, badEnc, ct, aad));
  decryptFailed(() => hpkeOpen(kp.privateKey, enc, ct, utf8('aae')));
  decryptFailed(() => hpkeOpen(kp.privateKey, enc, ct, aad, utf8('other info')));
  decryptFailed(() => hpkeOpen(other.privateKey, enc, ct, aad));
  decryptFailed(() => hpkeOpen(kp.privateKey, enc, ct.subarray(0, 15), aad));
  decryptFailed(() => hpkeOpen(kp.privateKey, enc.subarray(1), ct, aad));
  // Small-order point (u = 0) as enc: the all-zero shared secret must be refused, not used.
  decryptFailed(() => hpkeOpen(kp.privateKey, Buffer.alloc(32), ct, aad));
  assert.throws(() => hpkeSeal(Buffer.alloc(31), utf8('x'), aad), GatehouseError);
  assert.throws(() => hpkeSeal(Buffer.alloc(32), utf8('x'), aad), GatehouseError);
  // The untouched envelope still opens: the failures above are not a broken implementation.
  assert.equal(Buffer.from(hpkeOpen(kp.privateKey, enc, ct, aad)).toString(), 'secret');
});

test('the cached private key follows the array: rewritten in place, the old key no longer opens', () => {
  const a = generateHpkeKeyPair();
  const b = generateHpkeKeyPair();
  const ad = utf8('aad');
  const toA = hpkeSeal(a.publicKey, utf8('pw'), ad);
  const toB = hpkeSeal(b.publicKey, utf8('pw'), ad);
  const key = new Uint8Array(a.privateKey);
  assert.deepEqual(Buffer.from(hpkeOpen(key, toA.enc, toA.ct, ad)), utf8('pw'));
  key.set(b.privateKey);
  assert.throws(() => hpkeOpen(key, toA.enc, toA.ct, ad), GatehouseError);
  assert.deepEqual(Buffer.from(hpkeOpen(key, toB.enc, toB.ct, ad)), utf8('pw'));
});
