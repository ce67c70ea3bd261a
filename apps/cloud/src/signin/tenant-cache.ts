/**
 * What home realm discovery needs of a tenant (its settings and federated domains), cached for a
 * short time: every sign-in reads it, and it changes rarely.
 */
import { performance } from 'node:perf_hooks';
import type { Db } from '../db/index.ts';
import { listFederatedRedirects } from '../store/domains.ts';
import { getTenant, type Tenant } from '../store/tenants.ts';

export interface TenantInfo {
  tenant: Tenant;
  /** Verified federated domains of the tenant and where they sign in. */
  federated: Map<string, string>;
}

export interface TenantCache {
  get(tenantId: string): Promise<TenantInfo>;
  /** Drops one tenant's entry, or all of them. */
  invalidate(tenantId?: string): void;
}

export const createTenantCache = (db: Db, ttlMs: number): TenantCache => {
  const cache = new Map<string, { at: number; info: Promise<TenantInfo> }>();

  const load = async (tenantId: string): Promise<TenantInfo> => {
    const [tenant, federated] = await Promise.all([
      getTenant(db, tenantId),
      listFederatedRedirects(db, tenantId),
    ]);
    return { tenant, federated };
  };

  return {
    // The promise is cached, so a burst of sign-ins for one tenant makes one query, not one each.
    get(tenantId) {
      const now = performance.now();
      const hit = cache.get(tenantId);
      if (hit && now - hit.at < ttlMs) return hit.info;
      const info = load(tenantId);
      cache.set(tenantId, { at: now, info });
      if (cache.size > 10_000) cache.delete(cache.keys().next().value!);
      return info;
    },
    invalidate(tenantId) {
      if (tenantId === undefined) cache.clear();
      else cache.delete(tenantId);
    },
  };
};
