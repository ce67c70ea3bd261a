/**
 * HPKE seal/open cost: ours (node:crypto) against @hpke/core (WebCrypto), same suite and sizes.
 * Run: npx node bench/hpke.ts [iterations]
 */
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { generateHpkeKeyPair, hpkeOpen, hpkeSeal } from '../packages/protocol/src/hpke.ts';

const n = Number(process.argv[2] ?? 5000);
const info = Buffer.from('gatehouse/v1 password');
const aad = Buffer.from(
  '{"tenant":"00000000-0000-0000-0000-000000000000","request":"r-1","user":"u@example.com"}',
);
const pt = Buffer.from('a password of about twenty-four chars');
const kp = generateHpkeKeyPair();

async function time(label: string, fn: () => unknown): Promise<void> {
  for (let i = 0; i < Math.min(500, n); i++) await fn();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1000 / n;
  const used = process.cpuUsage(cpu0);
  const cpu = (used.user + used.system) / n;
  console.log(
    `${label.padEnd(22)} ${wall.toFixed(1).padStart(7)} us wall  ${cpu.toFixed(1).padStart(7)} us cpu`,
  );
}

const sealed = hpkeSeal(kp.publicKey, pt, aad);
await time('ours seal', () => hpkeSeal(kp.publicKey, pt, aad));
await time('ours open', () => hpkeOpen(kp.privateKey, sealed.enc, sealed.ct, aad));

const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes128Gcm(),
});
const recipientPublicKey = await suite.kem.deserializePublicKey(new Uint8Array(kp.publicKey).buffer);
const recipientKey = await suite.kem.deserializePrivateKey(new Uint8Array(kp.privateKey).buffer);
const theirs = await suite.seal({ recipientPublicKey, info }, pt, aad);
await time('@hpke/core seal', () => suite.seal({ recipientPublicKey, info }, pt, aad));
await time('@hpke/core open', () => suite.open({ recipientKey, enc: theirs.enc, info }, theirs.ct, aad));
