/**
 * What the health tests share: a single-node cloud on free ports in a scratch data directory, and
 * a /readyz probe through the cloud's own CA.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';

export const dir = mkdtempSync(join(tmpdir(), 'gh-health-'));
after(() => rmSync(dir, { recursive: true, force: true }));

export const start = (overrides: Record<string, unknown> = {}, logs?: string[]) =>
  startCloud(
    {
      dataDir: join(dir, Math.random().toString(36).slice(2)),
      port: 0,
      gatewayPort: 0,
      logLevel: 'info',
      ...overrides,
    },
    { env: {}, logDestination: { write: (s: string) => void logs?.push(s) } },
  );

export const probe = async (cloud: RunningCloud, base = cloud.url) => {
  const res = await pinnedFetch(cloud.caCert)(`${base}/readyz`);
  return {
    status: res.status,
    body: (await res.json()) as { status: string; checks: Record<string, unknown> },
  };
};
