/**
 * X.509 for the agent channel (@peculiar/x509 over node's WebCrypto): the cloud's own CA and
 * server certificate, each tenant's CA, agent CSRs and the certificates signed from them.
 * STUB: signatures are the contract; the implementation is being written.
 */
export interface KeyAndCert {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
}
export declare function createCa(commonName: string, days: number): Promise<KeyAndCert>;
/** Server certificate for `names` (DNS names or IP addresses) signed by `ca`. */
export declare function createServerCert(ca: KeyAndCert, names: string[], days: number): Promise<KeyAndCert>;
/** The agent's key pair (ECDSA P-256) and a CSR for it. */
export declare function createCsr(hostname: string): Promise<{ csrPem: string; keyPem: string }>;
/**
 * Signs a CSR with a tenant CA. The subject is set by the CA, never taken from the CSR:
 * CN=<agentId>, O=<tenantId>, OU=gatehouse-agent; EKU clientAuth. Verifies the CSR's signature.
 */
export declare function signAgentCsr(
  ca: KeyAndCert,
  csrPem: string,
  subject: { agentId: string; tenantId: string },
  days: number,
): Promise<{ certPem: string; serial: string; notAfter: Date }>;
/** Reads the agent and tenant ids from an agent certificate (PEM or DER), without verifying it. */
export declare function agentIdentity(cert: string | Uint8Array): { agentId: string; tenantId: string; serial: string; notAfter: Date };
/** True when `cert` was issued by `caPem`, its signature verifies and it is within its validity period. */
export declare function verifyIssuedBy(cert: string | Uint8Array, caPem: string, at?: Date): boolean;
/** SHA-256 fingerprint (hex, lower case) of a certificate's DER. */
export declare function fingerprint(certPem: string): string;
