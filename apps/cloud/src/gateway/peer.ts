/**
 * Who is on the other end of a mutual-TLS socket. The TLS layer asks for a certificate but
 * accepts any (so a refusal can be a catalog error, not a bare alert); this decides: the
 * certificate names a live agent of its tenant with the same serial, and the tenant's CA issued it.
 */
import type { TLSSocket } from 'node:tls';
import { agentIdentity, GatehouseError, verifyIssuedBy } from '@gatehouse/protocol';
import type { Db } from '../db/index.ts';
import { getAgent } from '../store/agents.ts';
import { tenantCaCert } from '../store/tenants.ts';

export interface AuthenticatedPeer {
  agentId: string;
  tenantId: string;
  serial: string;
  hpkePublicKey: string;
  hostname: string;
}

/** Tenant CA certificates change only with the tenant; read each once per process. */
export class TenantCaCache {
  readonly #db: Db;
  readonly #cache = new Map<string, string>();
  constructor(db: Db) {
    this.#db = db;
  }
  async get(tenantId: string): Promise<string | null> {
    const hit = this.#cache.get(tenantId);
    if (hit !== undefined) return hit;
    const caCert = await tenantCaCert(this.#db, tenantId);
    if (caCert === undefined) return null;
    if (this.#cache.size > 10_000) this.#cache.clear();
    this.#cache.set(tenantId, caCert);
    return caCert;
  }
}

const sameSerial = (a: string, b: string) =>
  a.replace(/^0+/, '').toLowerCase() === b.replace(/^0+/, '').toLowerCase();

export const authenticatePeer = async (
  socket: TLSSocket,
  deps: { db: Db; cas: TenantCaCache; now: () => number },
): Promise<AuthenticatedPeer> => {
  const reject = (why: string): never => {
    throw new GatehouseError('certificate_rejected', { reason: why });
  };
  const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
  if (!cert?.raw) return reject('no client certificate');
  let id: ReturnType<typeof agentIdentity>;
  try {
    id = agentIdentity(new Uint8Array(cert.raw));
  } catch {
    return reject('not an agent certificate');
  }
  const agent = await getAgent(deps.db, id.agentId);
  if (!agent || agent.tenantId !== id.tenantId) return reject('unknown agent');
  if (agent.deletedAt !== null) return reject('agent deleted');
  if (!sameSerial(agent.certSerial, id.serial)) return reject('certificate replaced or revoked');
  const ca = await deps.cas.get(id.tenantId);
  if (!ca || !verifyIssuedBy(new Uint8Array(cert.raw), ca, new Date(deps.now()))) {
    return reject('not issued by the tenant CA, or expired');
  }
  return {
    agentId: agent.id,
    tenantId: agent.tenantId,
    serial: id.serial,
    hpkePublicKey: agent.hpkePublicKey,
    hostname: agent.hostname,
  };
};
