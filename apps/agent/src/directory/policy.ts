/**
 * The directory's own account lockout policy, read with the service account and sent to the cloud
 * (Hello/Heartbeat `directory.lockoutPolicy`) so cloud smart lockout can stay below it.
 *
 * AD: the domain root object's lockoutThreshold and lockoutDuration. Fine-grained password
 * policies (PSOs) applied to single users or groups are not read.
 * OpenLDAP: the default ppolicy entry (pwdLockout, pwdMaxFailure, pwdLockoutDuration); a user's own
 * pwdPolicySubentry is not read.
 */
import type { DirectoryLockoutPolicy } from '@gatehouse/protocol';
import type { Client } from 'ldapts';
import type { DirectoryConfig } from '../config.ts';

const first = (v: unknown): string | undefined => {
  const x = Array.isArray(v) ? v[0] : v;
  return x === undefined || x === null ? undefined : Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
};

/** AD "never" for an interval: the most negative 64-bit value. */
const AD_NEVER = -9223372036854775808n;

/**
 * AD lockoutDuration (negative 100-ns intervals) -> seconds; 0 means "until an administrator
 * unlocks it". AD stores that choice as -9223372036854775808 (0x8000000000000000); a
 * non-negative value also never expires (Samba and Windows treat lockoutDuration >= 0 so).
 */
export const adLockoutDurationS = (raw: string | undefined): number => {
  if (raw === undefined || !/^-?\d+$/.test(raw.trim())) return 0;
  const v = BigInt(raw.trim());
  if (v === AD_NEVER || v >= 0n) return 0;
  return Number(-v) / 1e7;
};

const intOr0 = (raw: string | undefined): number => {
  const n = Number.parseInt(raw ?? '', 10);
  return Number.isFinite(n) && n > 0 ? n : 0;
};

/** The AD domain root: the root DSE's defaultNamingContext, else the DC= part of the first base DN. */
const adDomainRoot = async (c: Client, cfg: DirectoryConfig): Promise<string> => {
  const dse = await c.search('', { scope: 'base', attributes: ['defaultNamingContext'] });
  const nc = first(dse.searchEntries[0]?.defaultNamingContext);
  if (nc) return nc;
  const dcs = cfg.baseDns[0].split(',').filter((p) => /^\s*dc=/i.test(p));
  return dcs.map((p) => p.trim()).join(',');
};

export const readLockoutPolicy = async (c: Client, cfg: DirectoryConfig): Promise<DirectoryLockoutPolicy> => {
  if (cfg.kind === 'ad') {
    const root = await adDomainRoot(c, cfg);
    const r = await c.search(root, { scope: 'base', attributes: ['lockoutThreshold', 'lockoutDuration'] });
    const e = r.searchEntries[0];
    if (!e) throw new Error(`cannot read the domain object ${root}`);
    const threshold = intOr0(first(e.lockoutThreshold));
    return { threshold, durationS: threshold ? adLockoutDurationS(first(e.lockoutDuration)) : 0 };
  }
  const dn = cfg.ppolicyDefaultDn ?? `cn=default,ou=policies,${cfg.baseDns[0]}`;
  const r = await c.search(dn, {
    scope: 'base',
    attributes: ['pwdLockout', 'pwdMaxFailure', 'pwdLockoutDuration'],
  });
  const e = r.searchEntries[0];
  if (!e) throw new Error(`cannot read the ppolicy entry ${dn}`);
  // Without pwdLockout TRUE, ppolicy counts failures but never locks.
  if (first(e.pwdLockout)?.toUpperCase() !== 'TRUE') return { threshold: 0, durationS: 0 };
  const threshold = intOr0(first(e.pwdMaxFailure));
  return { threshold, durationS: threshold ? intOr0(first(e.pwdLockoutDuration)) : 0 };
};
