/**
 * Just-in-time users: the cloud asks about a name it has not synced (`lookup` on the validate
 * request). The service account finds the one user the name denotes under the base DNs, as a
 * UPN, DOMAIN\name or mail, and the user is then bound as usual; only when the password is right
 * does the answer carry the user's attributes, so the cloud learns nothing about a name without
 * its password. A name that matches nobody, or more than one user, is a wrong password.
 */
import type { SyncedUser } from '@gatehouse/protocol';
import type { DirectoryConfig } from './config.ts';
import { escapeFilterValue } from './directory/groups.ts';
import type { Directory } from './directory/index.ts';
import { readNetbiosDomains, syncAttributes, toSyncedUser } from './sync.ts';

/** The filter of the users a typed name may denote (the mapped user is checked again after). */
export const lookupFilter = (cfg: DirectoryConfig, name: string): string => {
  const v = escapeFilterValue(name);
  const slash = name.indexOf('\\');
  let any: string[];
  if (slash >= 0) {
    const bare = escapeFilterValue(name.slice(slash + 1));
    any = [cfg.kind === 'ad' ? `(sAMAccountName=${bare})` : `(uid=${bare})`];
  } else if (cfg.kind === 'ad') {
    any = [`(userPrincipalName=${v})`, `(mail=${v})`];
  } else {
    const attr = cfg.upnAttribute ?? 'mail';
    any = [`(${attr}=${v})`, `(mail=${v})`];
    // A UPN made of uid@upnDomain.
    const at = name.lastIndexOf('@');
    if (cfg.upnDomain && at > 0 && name.slice(at + 1).toLowerCase() === cfg.upnDomain.toLowerCase())
      any.push(`(${attr}=${escapeFilterValue(name.slice(0, at))})`);
  }
  return `(&${cfg.userFilter}(|${[...new Set(any)].join('')}))`;
};

/** Whether the mapped user is the one `name` denotes (exactly, ignoring case). */
export const denotes = (u: SyncedUser, name: string): boolean => {
  const n = name.toLowerCase();
  if (n.includes('\\')) {
    const on = u.onPremName?.toLowerCase();
    return on === n || (on !== undefined && !on.includes('\\') && on === n.slice(n.indexOf('\\') + 1));
  }
  return u.upn.toLowerCase() === n || u.mail?.toLowerCase() === n;
};

/** The one synced-shape user `name` denotes, or null (none, several, or a failed search). */
export const lookupUser = async (
  dir: Directory,
  name: string,
  timeoutMs: number,
): Promise<SyncedUser | null> => {
  const cfg = dir.cfg;
  if (!name || name.length > 256) return null;
  try {
    return await dir.serviceOp(async (client) => {
      const domains =
        cfg.kind === 'ad' && !cfg.netbiosDomain
          ? await readNetbiosDomains(client).catch(() => undefined)
          : undefined;
      const found = new Map<string, SyncedUser>();
      for (const base of cfg.baseDns) {
        const r = await client.search(base, {
          scope: 'sub',
          filter: lookupFilter(cfg, name),
          attributes: syncAttributes(cfg),
          explicitBufferAttributes: cfg.kind === 'ad' ? ['objectGUID'] : [],
          sizeLimit: 3,
        });
        for (const e of r.searchEntries) {
          const u = toSyncedUser(e, cfg, domains);
          if (u && denotes(u, name)) found.set(u.anchor, u);
        }
      }
      return found.size === 1 ? [...found.values()][0]! : null;
    }, timeoutMs);
  } catch {
    return null;
  }
};
