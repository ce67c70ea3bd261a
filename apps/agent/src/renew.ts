/**
 * Certificate renewal over mutual TLS: new TLS and HPKE keys made here, a CSR and the new HPKE
 * public key sent to the gateway host with the current certificate, the answer stored atomically.
 */
import { hostname } from 'node:os';
import { createCsr, GatehouseError, generateHpkeKeyPair, RenewResponse } from '@gatehouse/protocol';
import { postJson } from './https.ts';
import { type AgentState, saveRenewal } from './state.ts';

/** https://gateway-host:port, from the wss:// gateway URL. */
export const renewUrl = (gatewayUrl: string): string => {
  const u = new URL(gatewayUrl);
  return `https://${u.host}/agent/v1/renew`;
};

export const renewCertificate = async (
  stateDir: string,
  state: AgentState,
  proxy?: string,
): Promise<void> => {
  const { csrPem, keyPem } = await createCsr(hostname());
  const hpke = generateHpkeKeyPair();
  const res = await postJson(
    renewUrl(state.gatewayUrl),
    { csr: csrPem, hpkePublicKey: Buffer.from(hpke.publicKey).toString('base64url') },
    { ca: state.cloudCaPem, key: state.keyPem, cert: state.certPem },
    { proxy },
  );
  const parsed = RenewResponse.safeParse(res.body);
  if (res.status !== 200 || !parsed.success) {
    throw new GatehouseError('invalid_response', { status: res.status, body: res.body });
  }
  saveRenewal(stateDir, { keyPem, certPem: parsed.data.certificate, hpkePrivateKey: hpke.privateKey });
};
