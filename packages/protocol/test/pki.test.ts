import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { before, test } from 'node:test';
import * as tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { GatehouseError } from '../src/errors.ts';
import {
  agentIdentity,
  createCa,
  createCsr,
  createServerCert,
  fingerprint,
  type KeyAndCert,
  signAgentCsr,
  verifyIssuedBy,
} from '../src/pki.ts';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const DAY = 86_400_000;

let serviceCa: KeyAndCert;
let otherCa: KeyAndCert;
let tenantA: KeyAndCert;
let tenantB: KeyAndCert;
let server: KeyAndCert;
let agentA: { certPem: string; keyPem: string; serial: string; notAfter: Date };
let agentB: { certPem: string; keyPem: string };

before(async () => {
  [serviceCa, otherCa, tenantA, tenantB] = await Promise.all([
    createCa('Gatehouse service CA', 30),
    createCa('Gatehouse service CA', 30), // same name, different key: only the key must count
    createCa('tenant-a agents', 30),
    createCa('tenant-b agents', 30),
  ]);
  server = await createServerCert(serviceCa, ['localhost', '127.0.0.1'], 7);
  const csrA = await createCsr('dc01.corp.example');
  agentA = {
    ...(await signAgentCsr(tenantA, csrA.csrPem, { agentId: 'agent-1', tenantId: 'tenant-a' }, 7)),
    keyPem: csrA.keyPem,
  };
  const csrB = await createCsr('dc02.other.example');
  agentB = {
    ...(await signAgentCsr(tenantB, csrB.csrPem, { agentId: 'agent-2', tenantId: 'tenant-b' }, 7)),
    keyPem: csrB.keyPem,
  };
});

/** A TLS server answering each connection with the agent id of its verified client certificate. */
function startServer(opts: tls.TlsOptions): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = tls.createServer({ cert: server.certPem, key: server.keyPem, ...opts }, (socket) => {
    const peer = socket.getPeerCertificate();
    socket.end(peer?.raw ? `agent:${agentIdentity(peer.raw).agentId}` : 'anonymous');
  });
  srv.on('tlsClientError', () => {}); // the client sees the failure; nothing to do here
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      resolve({
        port: (srv.address() as AddressInfo).port,
        close: () => new Promise((r) => srv.close(() => r())),
      });
    });
  });
}

/** Resolves with what the server said, rejects with the TLS error (code or message). */
function talk(port: number, opts: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = tls.connect({ host: '127.0.0.1', port, ...opts });
    socket.setEncoding('utf8');
    socket.on('data', (d) => {
      data += d;
    });
    socket.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message)));
    socket.on('close', () => (data ? resolve(data) : reject(new Error('closed without an answer'))));
  });
}

test('CA, server and agent certificates carry the intended constraints and PKCS#8 keys', () => {
  const ca = new X509Certificate(serviceCa.certPem);
  assert.equal(ca.ca, true);
  assert.equal(ca.checkIssued(ca), true);
  const srv = new X509Certificate(server.certPem);
  assert.equal(srv.ca, false);
  assert.deepEqual(srv.keyUsage, [SERVER_AUTH]);
  assert.equal(srv.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1');
  const agent = new X509Certificate(agentA.certPem);
  assert.equal(agent.ca, false);
  assert.deepEqual(agent.keyUsage, [CLIENT_AUTH]);
  for (const pem of [serviceCa.keyPem, server.keyPem, agentA.keyPem]) {
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----/);
    const key = createPrivateKey(pem);
    assert.equal(key.asymmetricKeyType, 'ec');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  }
  assert.equal(fingerprint(server.certPem), srv.fingerprint256.replaceAll(':', '').toLowerCase());
});

test('node:tls: a client pinning the service CA connects by DNS name and by IP; other pins fail', async () => {
  const srv = await startServer({});
  try {
    assert.equal(await talk(srv.port, { ca: serviceCa.certPem, servername: 'localhost' }), 'anonymous');
    assert.equal(await talk(srv.port, { ca: serviceCa.certPem }), 'anonymous'); // IP SAN 127.0.0.1
    await assert.rejects(
      talk(srv.port, { ca: otherCa.certPem, servername: 'localhost' }),
      /SIGNATURE|UNABLE/,
    );
    await assert.rejects(
      talk(srv.port, { ca: tenantA.certPem, servername: 'localhost' }),
      /SIGNATURE|UNABLE/,
    );
    await assert.rejects(
      talk(srv.port, { ca: serviceCa.certPem, servername: 'gatehouse.example' }),
      /ERR_TLS_CERT_ALTNAME_INVALID/,
    );
  } finally {
    await srv.close();
  }
});

test('mutual TLS: an agent certificate is accepted by its tenant CA only', async () => {
  const pin = { ca: serviceCa.certPem, servername: 'localhost' };
  const asA = { ...pin, cert: agentA.certPem, key: agentA.keyPem };
  const asB = { ...pin, cert: agentB.certPem, key: agentB.keyPem };
  const a = await startServer({ requestCert: true, rejectUnauthorized: true, ca: tenantA.certPem });
  const b = await startServer({ requestCert: true, rejectUnauthorized: true, ca: tenantB.certPem });
  try {
    assert.equal(await talk(a.port, asA), 'agent:agent-1');
    assert.equal(await talk(b.port, asB), 'agent:agent-2');
    await assert.rejects(talk(a.port, asB));
    await assert.rejects(talk(b.port, asA));
    await assert.rejects(talk(a.port, pin), /CERTIFICATE_REQUIRED/);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('verifyIssuedBy: issuer, signature and validity period', () => {
  assert.equal(verifyIssuedBy(agentA.certPem, tenantA.certPem), true);
  assert.equal(verifyIssuedBy(new X509Certificate(agentA.certPem).raw, tenantA.certPem), true);
  assert.equal(verifyIssuedBy(agentA.certPem, tenantB.certPem), false);
  assert.equal(verifyIssuedBy(agentA.certPem, serviceCa.certPem), false);
  assert.equal(verifyIssuedBy(server.certPem, otherCa.certPem), false, 'same CA name, other key');
  // A leaf is not a CA, even for a certificate it "signed" nothing of.
  assert.equal(verifyIssuedBy(agentA.certPem, agentA.certPem), false);
  const now = Date.now();
  assert.equal(verifyIssuedBy(agentA.certPem, tenantA.certPem, new Date(now + 6 * DAY)), true);
  assert.equal(verifyIssuedBy(agentA.certPem, tenantA.certPem, new Date(now + 8 * DAY)), false, 'expired');
  assert.equal(verifyIssuedBy(agentA.certPem, tenantA.certPem, new Date(now - DAY)), false, 'not yet valid');
  assert.equal(verifyIssuedBy('not a certificate', tenantA.certPem), false);
  assert.equal(verifyIssuedBy(agentA.certPem, 'not a CA'), false);
});

test('signAgentCsr: the subject is forced by the CA, whatever the CSR says', async () => {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ]);
  const forged = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=agent-1, O=tenant-b, OU=gatehouse-agent',
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const issued = await signAgentCsr(
    tenantA,
    forged.toString('pem'),
    { agentId: 'agent-9', tenantId: 'tenant-a' },
    1,
  );
  const cert = new X509Certificate(issued.certPem);
  assert.equal(cert.subject, 'CN=agent-9\nO=tenant-a\nOU=gatehouse-agent');
  assert.equal(cert.serialNumber.toLowerCase(), issued.serial);
  assert.match(issued.serial, /^[0-9a-f]{32}$/);
  assert.deepEqual(agentIdentity(issued.certPem), {
    agentId: 'agent-9',
    tenantId: 'tenant-a',
    serial: issued.serial,
    notAfter: issued.notAfter,
  });
  assert.ok(Math.abs(issued.notAfter.getTime() - (Date.now() + DAY)) < 60_000);
  // The certified key is the CSR's key.
  const spki = Buffer.from(await crypto.subtle.exportKey('spki', keys.publicKey));
  assert.deepEqual(cert.publicKey.export({ format: 'der', type: 'spki' }), spki);
  const again = await signAgentCsr(
    tenantA,
    forged.toString('pem'),
    { agentId: 'agent-9', tenantId: 'tenant-a' },
    1,
  );
  assert.notEqual(again.serial, issued.serial);
});

test('signAgentCsr refuses a CSR whose signature does not match its key, or a non-P-256 key', async () => {
  const a = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const b = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const mismatched = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=host',
    keys: { publicKey: b.publicKey, privateKey: a.privateKey },
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const isValidationFailed = (e: unknown): boolean =>
    e instanceof GatehouseError && e.code === 'validation_failed';
  const subject = { agentId: 'x', tenantId: 'tenant-a' };
  await assert.rejects(signAgentCsr(tenantA, mismatched.toString('pem'), subject, 1), isValidationFailed);
  const p384 = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, [
    'sign',
    'verify',
  ]);
  const weak = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=host',
    keys: p384,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  await assert.rejects(signAgentCsr(tenantA, weak.toString('pem'), subject, 1), isValidationFailed);
  await assert.rejects(signAgentCsr(tenantA, 'garbage', subject, 1), isValidationFailed);
  const { csrPem } = await createCsr('dc01');
  await assert.rejects(signAgentCsr(tenantA, csrPem, subject, 0), isValidationFailed);
});

test('agentIdentity refuses certificates that are not agent certificates', () => {
  const rejected = (e: unknown): boolean => e instanceof GatehouseError && e.code === 'certificate_rejected';
  assert.throws(() => agentIdentity(server.certPem), rejected);
  assert.throws(() => agentIdentity(tenantA.certPem), rejected);
  assert.throws(() => agentIdentity('junk'), rejected);
});
