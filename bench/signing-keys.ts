/**
 * What signing key rotation costs the cloud (directory/signing-keys.ts, oidc/provider.ts): a
 * tenant's provider is rebuilt at every key change and at least every reload interval
 * (min(60 s, D/4)), so the rebuild's cost is paid about once a minute per active tenant on each
 * node; a rotation generates an ES256 and an RS256 key. Real cloud, SQLite file, one tenant.
 * `npx node bench/signing-keys.ts [ROUNDS]`
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startCloud } from '../apps/cloud/src/server.ts';
import { loadSigningKeys, rotateSigningKeys } from '../apps/cloud/src/store/signing-keys.ts';
import { createTenant } from '../apps/cloud/src/store/tenants.ts';

const rounds = Number(process.argv[2] ?? 50);
const dir = mkdtempSync(join(tmpdir(), 'gh-bench-keys-'));
const cloud = await startCloud(
  { dataDir: dir, port: 0, gatewayPort: 0, publicUrl: 'https://localhost:0', logLevel: 'silent' },
  { env: {} },
);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;
const time = async (f: () => Promise<unknown>) => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};
try {
  const { tenantId } = await createTenant(cloud.ctx, {
    name: 'Bench',
    domain: 'bench.example',
    admin: { upn: 'admin@bench.example', password: 'Bench-Passw0rd!' },
  });
  const oidc = cloud.oidc;
  const firstUse = await time(() => oidc.forTenant(tenantId)); // seeds the RS256 key
  const load: number[] = [];
  const rebuild: number[] = [];
  const rotate: number[] = [];
  for (let i = 0; i < rounds; i++) {
    load.push(await time(() => loadSigningKeys(cloud.ctx, tenantId)));
    oidc.invalidate(tenantId);
    rebuild.push(await time(() => oidc.forTenant(tenantId)));
  }
  for (let i = 0; i < Math.min(rounds, 20); i++) {
    // Each rotation must wait for the previous one to sign; give them no delay to measure back to back.
    rotate.push(
      await time(() => rotateSigningKeys(cloud.ctx, tenantId, { publishDelayS: 0, maxTokenTtlS: 0 })),
    );
  }
  const ms = (x: number) => Math.round(x * 100) / 100;
  console.log(
    JSON.stringify({
      rounds,
      firstUseMs: ms(firstUse),
      loadKeysMs: { p50: ms(pct(load, 0.5)), p95: ms(pct(load, 0.95)) },
      rebuildProviderMs: { p50: ms(pct(rebuild, 0.5)), p95: ms(pct(rebuild, 0.95)) },
      rotateMs: { p50: ms(pct(rotate, 0.5)), p95: ms(pct(rotate, 0.95)) },
    }),
  );
} finally {
  await cloud.stop();
  rmSync(dir, { recursive: true, force: true });
}
