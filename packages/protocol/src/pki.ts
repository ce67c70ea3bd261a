/**
 * X.509 for the agent channel (@peculiar/x509 over node's WebCrypto): the cloud's own CA and
 * server certificate, each tenant's CA, agent CSRs and the certificates signed from them.
 * Keys are ECDSA P-256, signatures SHA-256, private keys PKCS#8 PEM (node:tls takes them as is).
 * Verification uses node's own X509Certificate (OpenSSL), the same code node:tls trusts.
 */
// @peculiar/x509 2.x resolves its providers with tsyringe, which needs a Reflect metadata polyfill
// loaded before it: that is the only reason for the reflect-metadata dependency.
import { createHash, X509Certificate as NodeX509, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';
import { GatehouseError } from './errors.ts';

// @peculiar/x509 (with reflect-metadata, which it needs) loads on first use: it costs an agent
// ~12 MB of memory and is only needed to register and renew. Reading and checking certificates
// uses node's own X509Certificate.
let x509Module: Promise<typeof X509> | undefined;
const loadX509 = (): Promise<typeof X509> => {
  x509Module ??= (async () => {
    await import('reflect-metadata');
    const m = await import('@peculiar/x509');
    m.cryptoProvider.set(globalThis.crypto);
    return m;
  })();
  return x509Module;
};

export interface KeyAndCert {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
}

const EC: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 86_400_000;
// Backdated so a freshly issued certificate is accepted by a peer whose clock is a little behind.
const BACKDATE_MS = 5 * 60_000;
/** OU every agent certificate carries; agentIdentity refuses certificates without it. */
export const AGENT_OU = 'gatehouse-agent';

function validity(days: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(days) || days <= 0)
    throw new GatehouseError('validation_failed', 'days must be positive');
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

/** Random positive 128-bit serial (RFC 5280: at most 20 octets, positive, unpredictable). */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40; // positive, and no leading zero octet to be stripped
  return b.toString('hex');
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const x509 = await loadX509();
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

async function importSigningKey(keyPem: string): Promise<CryptoKey> {
  const x509 = await loadX509();
  try {
    const der = x509.PemConverter.decodeFirst(keyPem);
    return await crypto.subtle.importKey('pkcs8', der, EC, false, ['sign']);
  } catch (err) {
    throw new GatehouseError('config_invalid', 'CA key is not a PKCS#8 ECDSA P-256 key', { cause: err });
  }
}

async function loadCa(ca: KeyAndCert): Promise<{ cert: X509.X509Certificate; key: CryptoKey }> {
  const x509 = await loadX509();
  const cert = new x509.X509Certificate(ca.certPem);
  return { cert, key: await importSigningKey(ca.keyPem) };
}

/** Self-signed CA (the cloud's service CA, or a tenant's agent CA). */
export async function createCa(commonName: string, days: number): Promise<KeyAndCert> {
  const x509 = await loadX509();
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [commonName] }],
    ...validity(days),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/** Server certificate for `names` (DNS names or IP addresses) signed by `ca`. */
export async function createServerCert(ca: KeyAndCert, names: string[], days: number): Promise<KeyAndCert> {
  const x509 = await loadX509();
  if (names.length === 0) throw new GatehouseError('validation_failed', 'a server certificate needs a name');
  const issuer = await loadCa(ca);
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [names[0]] }],
    issuer: issuer.cert.subjectName,
    ...validity(days),
    signingAlgorithm: SIGNING,
    publicKey: keys.publicKey,
    signingKey: issuer.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        names.map((value) => ({ type: isIP(value) ? 'ip' : 'dns', value }) as const),
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/** The agent's key pair (ECDSA P-256) and a CSR for it. */
export async function createCsr(hostname: string): Promise<{ csrPem: string; keyPem: string }> {
  const x509 = await loadX509();
  const keys = await generateKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [hostname] }],
    keys,
    signingAlgorithm: SIGNING,
  });
  return { csrPem: csr.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

function parseCsr(x509: typeof X509, csrPem: string): X509.Pkcs10CertificateRequest {
  try {
    return new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new GatehouseError('validation_failed', 'the CSR cannot be parsed', { cause: err });
  }
}

/**
 * Signs a CSR with a tenant CA. The subject is set by the CA, never taken from the CSR:
 * CN=<agentId>, O=<tenantId>, OU=gatehouse-agent; EKU clientAuth. Verifies the CSR's signature
 * (proof that the requester holds the key) and accepts ECDSA P-256 keys only.
 */
export async function signAgentCsr(
  ca: KeyAndCert,
  csrPem: string,
  subject: { agentId: string; tenantId: string },
  days: number,
): Promise<{ certPem: string; serial: string; notAfter: Date }> {
  const x509 = await loadX509();
  const csr = parseCsr(x509, csrPem);
  const alg = csr.publicKey.algorithm as Partial<EcKeyAlgorithm>;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw new GatehouseError('validation_failed', 'the CSR key must be ECDSA P-256');
  }
  if (!(await csr.verify().catch(() => false))) {
    throw new GatehouseError('validation_failed', 'the CSR signature does not verify');
  }
  const issuer = await loadCa(ca);
  const serial = randomSerial();
  const { notBefore, notAfter } = validity(days);
  const publicKey = await csr.publicKey.export(EC, ['verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: [{ CN: [subject.agentId] }, { O: [subject.tenantId] }, { OU: [AGENT_OU] }],
    issuer: issuer.cert.subjectName,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING,
    publicKey,
    signingKey: issuer.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
    ],
  });
  return { certPem: cert.toString('pem'), serial, notAfter: cert.notAfter };
}

function parseCert(cert: string | Uint8Array): NodeX509 {
  try {
    return new NodeX509(typeof cert === 'string' ? cert : Buffer.from(cert));
  } catch (err) {
    throw new GatehouseError('certificate_rejected', 'the certificate cannot be parsed', { cause: err });
  }
}

/** Values of one attribute in a subject as node prints it ("CN=a\nO=b\nOU=c"). */
const subjectField = (subject: string, key: string): string[] =>
  subject
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1));

/** Reads the agent and tenant ids from an agent certificate (PEM or DER), without verifying it. */
export function agentIdentity(cert: string | Uint8Array): {
  agentId: string;
  tenantId: string;
  serial: string;
  notAfter: Date;
} {
  const parsed = parseCert(cert);
  const [agentId, ...moreCn] = subjectField(parsed.subject, 'CN');
  const [tenantId, ...moreO] = subjectField(parsed.subject, 'O');
  const ou = subjectField(parsed.subject, 'OU');
  if (
    !agentId ||
    !tenantId ||
    moreCn.length > 0 ||
    moreO.length > 0 ||
    ou.length !== 1 ||
    ou[0] !== AGENT_OU
  ) {
    throw new GatehouseError('certificate_rejected', 'not a Gatehouse agent certificate');
  }
  return { agentId, tenantId, serial: parsed.serialNumber.toLowerCase(), notAfter: parsed.validToDate };
}

/**
 * True when `cert` was issued by `caPem`, its signature verifies and both it and the CA are
 * within their validity period at `at`. Never throws: anything unreadable is simply not issued.
 */
export function verifyIssuedBy(cert: string | Uint8Array, caPem: string, at: Date = new Date()): boolean {
  try {
    const leaf = new NodeX509(typeof cert === 'string' ? cert : Buffer.from(cert));
    const ca = new NodeX509(caPem);
    const t = at.getTime();
    const within = (c: NodeX509): boolean => c.validFromDate.getTime() <= t && t <= c.validToDate.getTime();
    return ca.ca && leaf.checkIssued(ca) && leaf.verify(ca.publicKey) && within(leaf) && within(ca);
  } catch {
    return false;
  }
}

/** SHA-256 fingerprint (hex, lower case) of a certificate's DER. */
export function fingerprint(certPem: string): string {
  return createHash('sha256').update(new NodeX509(certPem).raw).digest('hex');
}
