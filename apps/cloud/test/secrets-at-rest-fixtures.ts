/**
 * Secrets at rest, against a real cloud (secrets-at-rest.test.ts on SQLite,
 * secrets-at-rest.int.test.ts on PostgreSQL): sign in through the pages (a session, an
 * authorization code, tokens) and with the password grant and a refresh, make a confidential
 * client, a registration token and a device code, then read every row of every table (and, on
 * SQLite, the raw bytes of the database, -wal and -shm) and find none of those values. The process
 * runs with umask 000, so owner-only modes come from the code, not the environment. Last, rows
 * planted in the format of older versions are converted and keep working.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import { Kysely } from 'kysely';
import * as oc from 'openid-client';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { openOidcPayload } from '../src/db/at-rest.ts';
import type { Database, Db } from '../src/db/index.ts';
import { convertSecrets } from '../src/db/migrations.ts';
import { openSqlite } from '../src/db/sqlite.ts';
import { createSecretBox } from '../src/secrets.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { createClient } from '../src/store/clients.ts';
import { createRegistrationToken } from '../src/store/registration-tokens.ts';
import { createTenant, updateSettings } from '../src/store/tenants.ts';

process.umask(0o000);

const PASSWORD = 'Admin-pw-at-rest-1';
const REDIRECT = 'https://app.example.test/callback';
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Creds = { clientId: string; clientSecret: string };

/** A tiny browser: cookies by path (their values are collected as secrets), redirects by hand. */
const browser = (base: string, f: typeof fetch, seen: Set<string>) => {
  const jar = new Map<string, { name: string; value: string; path: string }>();
  return async (url: string, form?: Record<string, string>) => {
    const u = new URL(url, base);
    const cookie = [...jar.values()]
      .filter((c) => u.pathname.startsWith(c.path))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
    const res = await f(u.href, {
      method: form ? 'POST' : 'GET',
      headers: {
        accept: 'text/html',
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = line.split(';').map((s) => s.trim());
      const name = pair.slice(0, pair.indexOf('='));
      const value = pair.slice(pair.indexOf('=') + 1);
      const path = attrs.find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      jar.set(`${name}\0${path}`, { name, value, path });
      if (value.length >= 16 && !name.endsWith('.sig')) seen.add(value);
    }
    return { res, text: await res.text(), location: res.headers.get('location') ?? '' };
  };
};

const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';

/** The code flow through the sign-in pages; returns the code and the tokens it bought. */
const codeFlow = async (cloud: RunningCloud, issuer: string, web: Creds, seen: Set<string>) => {
  const f = pinnedFetch(cloud.caCert);
  const config = await oc.discovery(
    new URL(issuer),
    web.clientId,
    undefined,
    oc.ClientSecretBasic(web.clientSecret),
    {
      [oc.customFetch]: f as oc.CustomFetch,
    },
  );
  const verifier = oc.randomPKCECodeVerifier();
  const state = oc.randomState();
  const go = browser(cloud.url, f, seen);
  const start = await go(
    oc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid profile offline_access',
      code_challenge: await oc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      prompt: 'consent',
    }).href,
  );
  const step1 = await go(start.location);
  const step2 = await go(`${start.location}/username`, {
    username: 'admin@contoso.example',
    csrf: csrfOf(step1.text),
  });
  let hop = await go(`${start.location}/password`, {
    username: 'admin@contoso.example',
    password: PASSWORD,
    csrf: csrfOf(step2.text),
  });
  for (let i = 0; i < 5 && !hop.location.startsWith(REDIRECT); i++) hop = await go(hop.location);
  assert.ok(hop.location.startsWith(REDIRECT), `signed in through the pages: ${hop.res.status}`);
  const code = String(new URL(hop.location).searchParams.get('code'));
  const tokens = await oc.authorizationCodeGrant(config, new URL(hop.location), {
    pkceCodeVerifier: verifier,
    expectedState: state,
  });
  return { code, access: tokens.access_token, refresh: String(tokens.refresh_token) };
};

interface Exercised {
  secrets: Map<string, string>;
  tenantId: string;
  legacy: Creds;
  refresh: string;
}

/** Everything that makes a bearer secret; returns each with a label, and checks they work. */
export const exercise = async (cloud: RunningCloud): Promise<Exercised> => {
  const f = pinnedFetch(cloud.caCert);
  const { tenantId } = await createTenant(cloud.ctx, {
    name: 'Contoso',
    domain: 'contoso.example',
    admin: { upn: 'admin@contoso.example', password: PASSWORD, displayName: 'Admin' },
  });
  await updateSettings(cloud.ctx.db, tenantId, { legacyAuth: true }, { activeAgents: 0 });
  cloud.authenticator.invalidate(tenantId);
  const issuer = `${cloud.url}/${tenantId}/v2.0`;
  const legacy = (await createClient(cloud.ctx.db, tenantId, {
    name: 'Mail',
    grantTypes: ['password', 'refresh_token'],
  })) as Creds;
  const web = (await createClient(cloud.ctx.db, tenantId, {
    name: 'Web',
    redirectUris: [REDIRECT],
  })) as Creds;
  const config = await oc.discovery(
    new URL(issuer),
    legacy.clientId,
    undefined,
    oc.ClientSecretBasic(legacy.clientSecret),
    { [oc.customFetch]: f as oc.CustomFetch },
  );
  const first = await oc.genericGrantRequest(config, 'password', {
    username: 'admin@contoso.example',
    password: PASSWORD,
    scope: 'openid profile offline_access',
  });
  const second = await oc.refreshTokenGrant(config, String(first.refresh_token));
  // Stored under hashes, found again from the raw values: userinfo and the refresh worked.
  const info = await oc.fetchUserInfo(config, second.access_token, oc.skipSubjectCheck);
  assert.equal(info.upn, 'admin@contoso.example');
  const wrong = await f(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${legacy.clientId}:${legacy.clientSecret}x`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: String(second.refresh_token) }),
  });
  assert.equal(wrong.status, 401, 'a wrong client secret is refused');

  const cookies = new Set<string>();
  const flow = await codeFlow(cloud, issuer, web, cookies);
  const reg = await createRegistrationToken(cloud.ctx.db, tenantId, 'admin@contoso.example', 600, Date.now());
  const dev = await f(`${cloud.url}/agent/v1/device/authorize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tenantId, hostname: 'dc1.contoso.example' }),
  });
  assert.equal(dev.status, 200);
  const deviceCode = ((await dev.json()) as { device_code: string }).device_code;

  const secrets = new Map<string, string>([
    ['password-grant client secret', legacy.clientSecret],
    ['code-flow client secret', web.clientSecret],
    ['access token', first.access_token],
    ['refresh token', String(first.refresh_token)],
    ['rotated access token', second.access_token],
    ['rotated refresh token', String(second.refresh_token)],
    ['authorization code', flow.code],
    ['code-flow access token', flow.access],
    ['code-flow refresh token', flow.refresh],
    ['registration token', reg.token],
    ['device code', deviceCode],
    ...[...cookies].map((c, i) => [`cookie ${i}`, c] as [string, string]),
  ]);
  assert.ok(cookies.size >= 2, 'the session and interaction cookies were seen');
  for (const [label, v] of secrets) assert.ok(v.length >= 16, `${label} is a real value`);
  return { secrets, tenantId, legacy, refresh: String(second.refresh_token) };
};

/** Every row of every table (Kysely's own bookkeeping included), as one string per table. */
export const dumpTables = async (db: Db): Promise<Map<string, string>> => {
  const out = new Map<string, string>();
  const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
  assert.ok(tables.length >= 12, `tables found: ${tables.map((t) => t.name).join(', ')}`);
  for (const t of tables) {
    const rows = await (db as unknown as Kysely<Record<string, object>>)
      .selectFrom(t.name)
      .selectAll()
      .execute();
    out.set(t.name, JSON.stringify(rows));
  }
  return out;
};

export const assertNowhere = (secrets: Map<string, string>, places: Map<string, string | Buffer>) => {
  for (const [label, value] of secrets)
    for (const [where, content] of places)
      assert.ok(!content.includes(value), `the ${label} is readable in ${where}`);
};

export const start = async (database?: string) => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-rest-'));
  dirs.push(dir);
  const dataDir = join(dir, 'data');
  const overrides = {
    dataDir,
    port: 0,
    gatewayPort: 0,
    publicUrl: 'https://127.0.0.1:0',
    ...(database ? { database } : {}),
  };
  return { dataDir, overrides, cloud: await startCloud(overrides, quiet) };
};

export const quiet = { env: {}, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) };
export const mode = (path: string) => statSync(path).mode & 0o777;

/** Rewrites the stored rows the way versions before 0005 kept them: raw ids, JSON, plaintext. */
export const plantLegacyRows = async (file: string, dataDir: string, ex: Exercised) => {
  const box = createSecretBox(
    Buffer.from(readFileSync(join(dataDir, 'secret.key'), 'utf8').trim(), 'base64'),
  );
  const db = new Kysely<Database>({ dialect: openSqlite(file).dialect });
  try {
    for (const r of await db.selectFrom('oidc_payloads').selectAll().execute()) {
      const p = openOidcPayload(box, { tenantId: r.tenant_id, model: r.model, hashedId: r.id }, r.payload);
      const raw = (k: string) => (typeof p[k] === 'string' ? (p[k] as string) : null);
      await db.deleteFrom('oidc_payloads').where('model', '=', r.model).where('id', '=', r.id).execute();
      await db
        .insertInto('oidc_payloads')
        .values({
          ...r,
          id: String(p.jti),
          payload: JSON.stringify(p),
          grant_id: raw('grantId'),
          uid: raw('uid'),
          user_code: raw('userCode'),
        })
        .execute();
    }
    const c = await db
      .selectFrom('clients')
      .selectAll()
      .where('client_id', '=', ex.legacy.clientId)
      .executeTakeFirstOrThrow();
    const { client_secret_hash: _, ...rest } = JSON.parse(c.metadata) as Record<string, unknown>;
    const metadata = JSON.stringify({ ...rest, client_secret: ex.legacy.clientSecret });
    await db.updateTable('clients').set({ metadata }).where('client_id', '=', c.client_id).execute();
    const planted = await db.selectFrom('oidc_payloads').select('payload').execute();
    assert.ok(
      planted.some((r) => r.payload.includes(ex.refresh)),
      'the legacy rows hold the raw token',
    );
    // What migration 0005 does when an older database is opened, before anything is served.
    await db.transaction().execute((trx) => convertSecrets(trx, box));
  } finally {
    await db.destroy();
  }
};
