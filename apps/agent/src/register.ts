/**
 * Registration: the agent makes its TLS key (and CSR) and its HPKE key here, on its own host,
 * and sends only the public halves, with a one-time token or an approved device code. The
 * cloud's CA file is the only trust anchor for the HTTPS call.
 */
import { hostname as osHostname } from 'node:os';
import {
  catalog,
  createCsr,
  DeviceAuthorizeResponse,
  ErrorBody,
  type ErrorCode,
  GatehouseError,
  generateHpkeKeyPair,
  RegisterResponse,
  TenantId,
} from '@gatehouse/protocol';
import { postJson } from './https.ts';
import { saveRegistration } from './state.ts';
import { VERSION } from './version.ts';

export interface RegisterOptions {
  cloud: string;
  caPem: string;
  stateDir: string;
  token?: string;
  /** Device flow: the tenant to ask approval in. */
  tenantId?: string;
  hostname?: string;
  proxy?: string;
  /** Where the device flow prints its instructions (an administrator reads them). */
  print?: (line: string) => void;
  sleep?: (ms: number) => Promise<void>;
}

const errorCode = (body: unknown): string | undefined => {
  const p = ErrorBody.safeParse(body);
  return p.success ? p.data.error : undefined;
};

/** The cloud's catalog code for an error answer, or invalid_response when it sent none. */
const failure = (res: { status: number; body: unknown }): GatehouseError => {
  const c = errorCode(res.body);
  return new GatehouseError(c && c in catalog ? (c as ErrorCode) : 'invalid_response', {
    status: res.status,
    body: res.body,
  });
};

export const register = async (o: RegisterOptions): Promise<{ agentId: string; tenantId: string }> => {
  const cloud = o.cloud.replace(/\/+$/, '');
  if (!cloud.startsWith('https://'))
    throw new GatehouseError('validation_failed', { cloud: 'must be https://' });
  // --tenant is checked here, before a key is made, rather than by the cloud's 400 after one.
  if (o.tenantId !== undefined && !TenantId.safeParse(o.tenantId).success)
    throw new GatehouseError('validation_failed', { tenant: 'not a tenant id' });
  const host = o.hostname ?? osHostname();
  const print = o.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const tls = { ca: o.caPem };

  const { csrPem, keyPem } = await createCsr(host);
  const hpke = generateHpkeKeyPair();
  const base = {
    csr: csrPem,
    hpkePublicKey: Buffer.from(hpke.publicKey).toString('base64url'),
    hostname: host,
    version: VERSION,
  };

  let res: { status: number; body: unknown };
  if (o.token) {
    res = await postJson(`${cloud}/agent/v1/register`, { ...base, token: o.token }, tls, { proxy: o.proxy });
  } else {
    if (!o.tenantId)
      throw new GatehouseError('validation_failed', { tenant: 'required for the device flow' });
    const auth = await postJson(
      `${cloud}/agent/v1/device/authorize`,
      { tenantId: o.tenantId, hostname: host },
      tls,
      {
        proxy: o.proxy,
      },
    );
    const dev = DeviceAuthorizeResponse.safeParse(auth.body);
    if (auth.status !== 200 || !dev.success) {
      throw failure(auth);
    }
    const d = dev.data;
    print(`To approve this agent, sign in as a Global or Hybrid Identity Administrator at`);
    print(`  ${d.verification_uri}`);
    print(`and enter the code ${d.user_code}  (or open ${d.verification_uri_complete})`);
    let interval = Math.max(1, d.interval) * 1000;
    const expires = Date.now() + d.expires_in * 1000;
    for (;;) {
      if (Date.now() > expires) throw new GatehouseError('expired_token');
      await sleep(interval);
      res = await postJson(`${cloud}/agent/v1/register`, { ...base, deviceCode: d.device_code }, tls, {
        proxy: o.proxy,
      });
      const code = res.status === 400 ? errorCode(res.body) : undefined;
      if (code === 'authorization_pending') continue;
      if (code === 'slow_down') {
        interval += 5000;
        continue;
      }
      break;
    }
  }

  const parsed = RegisterResponse.safeParse(res.body);
  if (res.status !== 200 && res.status !== 201) {
    throw failure(res);
  }
  if (!parsed.success) throw new GatehouseError('invalid_response', { issues: parsed.error.issues });
  const r = parsed.data;
  saveRegistration(o.stateDir, {
    agentId: r.agentId,
    tenantId: r.tenantId,
    cloudUrl: cloud,
    gatewayUrl: r.gatewayUrl,
    keyPem,
    certPem: r.certificate,
    tenantCaPem: r.tenantCa,
    cloudCaPem: o.caPem,
    hpkePrivateKey: hpke.privateKey,
  });
  return { agentId: r.agentId, tenantId: r.tenantId };
};
