/** Agent configuration for the Samba AD DC of test/harness/samba.ts. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE_DN, type SambaDc } from '../../../../test/harness/samba.ts';
import { type DirectoryConfig, loadAgentConfig } from '../../src/config.ts';

export interface AdFixture {
  tmp: string;
  cfg(over?: Record<string, unknown>): DirectoryConfig;
  /** The three ways to reach the DC, TLS ones verified against the pinned CA and tlsServerName. */
  transports: Record<'ldap' | 'ldaps' | 'starttls', Record<string, unknown>>;
  cleanup(): void;
}

export const adFixture = (dc: SambaDc): AdFixture => {
  const tmp = mkdtempSync(join(tmpdir(), 'gh-agent-ad-'));
  // The domain administrator is the service account here; production uses a least-privilege one.
  writeFileSync(join(tmp, 'svc.pw'), `${dc.adminPassword}\n`, { mode: 0o600 });
  return {
    tmp,
    cfg: (over = {}) =>
      loadAgentConfig({
        env: {},
        overrides: {
          stateDir: tmp,
          directory: {
            kind: 'ad',
            urls: [dc.url],
            bindDn: dc.adminUpn,
            bindPasswordFile: join(tmp, 'svc.pw'),
            baseDns: [BASE_DN],
            connectTimeoutMs: 1000,
            timeoutMs: 5000,
            ...over,
          },
        },
      }).directory,
    transports: {
      ldap: { urls: [dc.url] },
      ldaps: { urls: [dc.ldapsUrl], caFile: dc.caFile, tlsServerName: dc.tlsServerName },
      starttls: { urls: [dc.url], startTls: true, caFile: dc.caFile, tlsServerName: dc.tlsServerName },
    },
    cleanup: () => rmSync(tmp, { recursive: true, force: true }),
  };
};
