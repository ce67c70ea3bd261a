/**
 * Password-grant sign-ins against cloud nodes through openid-client, the way a legacy client
 * behind a balancer sends them: one relying-party configuration per node and tenant (discovery
 * is cached, and forgotten when a node restarts), and steady load from a few workers.
 */
import { writeFileSync } from 'node:fs';
import * as oidc from 'openid-client';
import { type CloudNode, cli } from './cluster.ts';
import { pinnedFetch } from './pinned-fetch.ts';

/** A tenant as its users see it: where to sign in, as whom, with which password. */
export interface Realm {
  tenantId: string;
  clientId: string;
  domain: string;
  password: string;
}

/**
 * Creates the realm's tenant through the CLI (`env` names the cluster): its domain verified, a
 * public password-grant client, legacy authentication on, then `settings` (more `settings set`
 * flags). Fills in `realm.tenantId` and `realm.clientId`.
 */
export const createGrantRealm = async (
  env: NodeJS.ProcessEnv,
  realm: Realm,
  name: string,
  adminPasswordFile: string,
  settings: string[] = [],
): Promise<void> => {
  writeFileSync(adminPasswordFile, `Admin-${realm.password}`, { mode: 0o600 });
  const t = await cli(
    env,
    ...['tenant', 'create', '--name', name, '--domain', realm.domain, '--admin-upn', `admin@${realm.domain}`],
    ...['--admin-password-file', adminPasswordFile],
  );
  realm.tenantId = String(t.tenantId);
  await cli(env, 'domain', 'verify', '--tenant', realm.tenantId, '--name', realm.domain, '--force');
  const client = await cli(
    env,
    ...['client', 'create', '--tenant', realm.tenantId, '--name', 'Legacy'],
    ...['--redirect-uri', 'https://app.test/cb', '--public', '--grant-type', 'password'],
  );
  realm.clientId = String(client.clientId);
  await cli(env, 'settings', 'set', '--tenant', realm.tenantId, '--legacy-auth', 'on', ...settings);
};

export interface Attempt {
  node: string;
  tenantId: string;
  startedAt: number;
  endedAt: number;
  /** 'ok', a catalog code, or 'network' (the node went away under the request). */
  outcome: string;
}

export const grantLoad = (caCert: () => string) => {
  const cache = new Map<string, Promise<oidc.Configuration>>();
  const rp = (node: CloudNode, realm: Realm) => {
    const key = `${node.url} ${realm.tenantId}`;
    let c = cache.get(key);
    if (!c) {
      c = oidc.discovery(
        new URL(`${node.url}/${realm.tenantId}/v2.0`),
        realm.clientId,
        undefined,
        oidc.None(),
        {
          [oidc.customFetch]: pinnedFetch(caCert()) as oidc.CustomFetch,
        },
      );
      cache.set(key, c);
      c.catch(() => cache.delete(key));
    }
    return c;
  };

  const signIn = async (node: CloudNode, realm: Realm, user: string, password = realm.password) => {
    const startedAt = Date.now();
    let outcome = 'ok';
    try {
      await oidc.genericGrantRequest(await rp(node, realm), 'password', {
        username: `${user}@${realm.domain}`,
        password,
        scope: 'openid',
      });
    } catch (err) {
      const e = err as Error & { cause?: unknown };
      if (e.cause instanceof Response) {
        outcome = String(((await e.cause.json()) as { error_code?: string }).error_code ?? e.cause.status);
      } else if (e.cause && typeof e.cause === 'object' && 'error_code' in e.cause) {
        outcome = String((e.cause as { error_code: string }).error_code);
      } else outcome = 'network';
    }
    const a: Attempt = { node: node.id, tenantId: realm.tenantId, startedAt, endedAt: Date.now(), outcome };
    return a;
  };

  /**
   * Steady sign-ins from `workers` loops over the nodes `targets()` names (the balancer's view);
   * worker w signs in as users[w % users.length], so no two share a lockout counter when there
   * are as many users as workers.
   */
  const startLoad = (targets: () => CloudNode[], realm: Realm, users: string[], workers = users.length) => {
    const results: Attempt[] = [];
    let running = true;
    const loops = Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; running; i++) {
        const nodes = targets();
        results.push(await signIn(nodes[(w + i) % nodes.length]!, realm, users[w % users.length]!));
      }
    });
    return {
      results,
      stop: async () => {
        running = false;
        await Promise.all(loops);
        return results;
      },
    };
  };

  /** A restarted node has new discovery to fetch (its keys may have changed). */
  const forget = (node?: CloudNode) => {
    for (const k of [...cache.keys()]) if (!node || k.startsWith(`${node.url} `)) cache.delete(k);
  };

  return { signIn, startLoad, forget };
};
