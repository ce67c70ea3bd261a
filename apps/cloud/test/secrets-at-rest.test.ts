/** Secrets at rest on SQLite: no secret in any row or in the files, and owner-only modes (what is exercised: secrets-at-rest-fixtures.ts). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as oc from 'openid-client';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import {
  assertNowhere,
  dumpTables,
  exercise,
  mode,
  plantLegacyRows,
  quiet,
  start,
} from './secrets-at-rest-fixtures.ts';

test('SQLite: no secret in any row or in the files; data directory 0700, database files 0600', async () => {
  const { dataDir, overrides, cloud } = await start();
  let running: RunningCloud | undefined = cloud;
  try {
    const ex = await exercise(cloud);
    await cloud.authenticator.flush();
    const db = join(dataDir, 'gatehouse.db');
    assert.equal(mode(dataDir), 0o700, 'data directory');
    for (const f of [db, `${db}-wal`, `${db}-shm`]) assert.equal(mode(f).toString(8), '600', f);
    const tables = await dumpTables(cloud.ctx.db);
    assert.ok(tables.get('oidc_payloads')!.length > 1000, 'the OIDC rows are there, just unreadable');
    const places = new Map<string, string | Buffer>(tables);
    for (const f of [db, `${db}-wal`]) places.set(f, readFileSync(f));
    assertNowhere(ex.secrets, places);

    // An upgrade: the same rows in the format older versions wrote, converted by migration 0005.
    await cloud.stop();
    running = undefined;
    await plantLegacyRows(db, dataDir, ex);
    running = await startCloud(overrides, quiet);
    const f = pinnedFetch(running.caCert);
    const config = await oc.discovery(
      new URL(`${running.url}/${ex.tenantId}/v2.0`),
      ex.legacy.clientId,
      undefined,
      oc.ClientSecretBasic(ex.legacy.clientSecret),
      { [oc.customFetch]: f as oc.CustomFetch },
    );
    const renewed = await oc.refreshTokenGrant(config, ex.refresh);
    assert.ok(renewed.access_token, 'the refresh token and the client secret survived the upgrade');
    assertNowhere(ex.secrets, await dumpTables(running.ctx.db));
  } finally {
    await running?.stop();
  }
});
