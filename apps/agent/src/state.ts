/**
 * The agent's state directory: its private keys, certificates and identity, and the status file
 * the `status` command reads. Owner-only permissions (0700 dir, 0600 files); writes are atomic
 * (temp file + fsync + rename) so a crash never leaves half a key.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { type DirectoryHealth, GatehouseError, TenantId } from '@gatehouse/protocol';
import { z } from 'zod';

export const files = {
  tlsKey: 'tls.key',
  tlsCert: 'tls.crt',
  tenantCa: 'tenant-ca.pem',
  cloudCa: 'cloud-ca.pem',
  hpkeKey: 'hpke.key',
  agent: 'agent.json',
  status: 'status.json',
} as const;

export const ensureStateDir = (dir: string): void => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
};

export const writeFileAtomic = (path: string, data: string | Uint8Array, mode = 0o600): void => {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
};

const AgentJson = z.object({
  agentId: z.string().min(1),
  tenantId: TenantId,
  cloudUrl: z.url(),
  gatewayUrl: z.url(),
});
// The input side (plain strings): it is also what registration writes; loading parses the schema.
export type AgentIdentity = z.input<typeof AgentJson>;

export interface AgentState extends AgentIdentity {
  keyPem: string;
  certPem: string;
  tenantCaPem: string;
  cloudCaPem: string;
  hpkePrivateKey: Uint8Array;
}

export const saveRegistration = (dir: string, r: AgentState): void => {
  ensureStateDir(dir);
  writeFileAtomic(join(dir, files.tlsKey), r.keyPem);
  writeFileAtomic(join(dir, files.tlsCert), r.certPem);
  writeFileAtomic(join(dir, files.tenantCa), r.tenantCaPem);
  writeFileAtomic(join(dir, files.cloudCa), r.cloudCaPem);
  writeFileAtomic(join(dir, files.hpkeKey), Buffer.from(r.hpkePrivateKey).toString('base64url'));
  const id: AgentIdentity = {
    agentId: r.agentId,
    tenantId: r.tenantId,
    cloudUrl: r.cloudUrl,
    gatewayUrl: r.gatewayUrl,
  };
  // agent.json last: its presence means the registration is complete.
  writeFileAtomic(join(dir, files.agent), `${JSON.stringify(id, null, 2)}\n`);
};

/** Renewal: new TLS key and certificate, and the new HPKE key that goes with them. */
export const saveRenewal = (
  dir: string,
  r: { keyPem: string; certPem: string; hpkePrivateKey: Uint8Array },
): void => {
  // Everything new is on disk (fsynced) before the first rename, so the window where the key and
  // the certificate disagree is three renames long.
  writeFileAtomic(join(dir, `${files.tlsKey}.new`), r.keyPem);
  writeFileAtomic(join(dir, `${files.tlsCert}.new`), r.certPem);
  writeFileAtomic(join(dir, `${files.hpkeKey}.new`), Buffer.from(r.hpkePrivateKey).toString('base64url'));
  renameSync(join(dir, `${files.tlsKey}.new`), join(dir, files.tlsKey));
  renameSync(join(dir, `${files.tlsCert}.new`), join(dir, files.tlsCert));
  renameSync(join(dir, `${files.hpkeKey}.new`), join(dir, files.hpkeKey));
};

export const isRegistered = (dir: string): boolean => {
  try {
    AgentJson.parse(JSON.parse(readFileSync(join(dir, files.agent), 'utf8')));
    return true;
  } catch {
    return false;
  }
};

export const loadAgentState = (dir: string): AgentState => {
  let id: AgentIdentity;
  try {
    id = AgentJson.parse(JSON.parse(readFileSync(join(dir, files.agent), 'utf8')));
  } catch (err) {
    throw new GatehouseError('config_invalid', [
      {
        path: join(dir, files.agent),
        message: `not registered (run "register" first): ${(err as Error).message}`,
      },
    ]);
  }
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const hpkePrivateKey = new Uint8Array(Buffer.from(read(files.hpkeKey).trim(), 'base64url'));
  if (hpkePrivateKey.length !== 32)
    throw new GatehouseError('agent_no_key', { path: join(dir, files.hpkeKey) });
  return {
    ...id,
    keyPem: read(files.tlsKey),
    certPem: read(files.tlsCert),
    tenantCaPem: read(files.tenantCa),
    cloudCaPem: read(files.cloudCa),
    hpkePrivateKey,
  };
};

export interface StatusFile {
  pid: number;
  connected: boolean;
  agentId?: string;
  lastHeartbeatAt?: number;
  heartbeatMs?: number;
  directory: DirectoryHealth;
  updatedAt: number;
}

export const writeStatus = (dir: string, s: StatusFile): void =>
  writeFileAtomic(join(dir, files.status), `${JSON.stringify(s)}\n`);

export const readStatus = (dir: string): StatusFile | null => {
  try {
    return JSON.parse(readFileSync(join(dir, files.status), 'utf8')) as StatusFile;
  } catch {
    return null;
  }
};
