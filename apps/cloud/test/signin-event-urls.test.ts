/**
 * A real cloud on ports it picked itself: the CLI, run as an operator would with nothing but the
 * data directory, prints the URLs that cloud serves (its issuer, the agent registration command),
 * not the defaults of its own environment. And each sign-in is one log event carrying fastify's
 * request id, never the password.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pinnedFetch } from '../../../test/harness/pinned-fetch.ts';
import { type RunningCloud, startCloud } from '../src/server.ts';
import { createClient } from '../src/store/clients.ts';
import { createTenant, updateSettings } from '../src/store/tenants.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const PASSWORD = 'Event-canary-pw-7f3a!';
const dir = mkdtempSync(join(tmpdir(), 'gh-urls-'));
const lines: Record<string, unknown>[] = [];
let raw = '';
let cloud: RunningCloud;
let tenantId: string;

before(async () => {
  const logDestination = new Writable({
    write(chunk, _enc, cb) {
      raw += String(chunk);
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  cloud = await startCloud(
    {
      dataDir: join(dir, 'data'),
      port: 0,
      gatewayPort: 0,
      publicUrl: 'https://127.0.0.1:0',
      logLevel: 'info',
    },
    { env: {}, logDestination },
  );
  ({ tenantId } = await createTenant(cloud.ctx, {
    name: 'Fabrikam',
    domain: 'fabrikam.example',
    admin: { upn: 'admin@fabrikam.example', password: PASSWORD },
  }));
});
after(async () => {
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    // Only the data directory: no port, no public URL, as on an operator's shell.
    const env = {
      PATH: process.env.PATH,
      GATEHOUSE_CLOUD_DATA_DIR: join(dir, 'data'),
      GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
    };
    execFile(
      process.execPath,
      ['apps/cloud/src/cli.ts', ...args],
      { cwd: ROOT, env },
      (err, stdout, stderr) => done({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });

test('the CLI prints the issuer and the registration URL of the cloud as it started, not :8443', async () => {
  const port = new URL(cloud.url).port;
  assert.ok(port && port !== '8443', cloud.url);
  const f = pinnedFetch(cloud.caCert);
  const discovery = (await (
    await f(`${cloud.url}/${tenantId}/v2.0/.well-known/openid-configuration`)
  ).json()) as {
    issuer: string;
  };

  const shown = await cli(['tenant', 'show', '--tenant', tenantId]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`^issuer: ${discovery.issuer.replaceAll('.', '\\.')}$`, 'm'));
  assert.doesNotMatch(shown.stdout, /:8443/);
  const json = await cli(['tenant', 'show', '--tenant', tenantId, '--json']);
  assert.equal(JSON.parse(json.stdout).issuer, discovery.issuer);

  const client = await cli([
    'client',
    'create',
    '--tenant',
    tenantId,
    '--name',
    'Web',
    '--redirect-uri',
    'https://app.example/cb',
    '--json',
  ]);
  assert.equal(client.code, 0, client.stderr);
  assert.equal(JSON.parse(client.stdout).issuer, discovery.issuer);

  const token = await cli(['token', 'create', '--tenant', tenantId]);
  assert.equal(token.code, 0, token.stderr);
  assert.match(
    token.stdout,
    new RegExp(`gatehouse-agent register --cloud ${cloud.url.replaceAll('.', '\\.')} `),
  );
  // The URL printed is the one agents register at: the registration endpoint answers there.
  const reg = await f(`${cloud.url}/agent/v1/register`, {
    method: 'POST',
    body: '{}',
    headers: { 'content-type': 'application/json' },
  });
  assert.notEqual(reg.status, 404);
});

test('every sign-in is one info event with the request id, outcome, method and timings, never the password', async () => {
  await updateSettings(cloud.ctx.db, tenantId, { legacyAuth: true }, { activeAgents: 0 });
  cloud.authenticator.invalidate(tenantId);
  const c = (await createClient(cloud.ctx.db, tenantId, { name: 'Mail', grantTypes: ['password'] })) as {
    clientId: string;
    clientSecret: string;
  };
  const f = pinnedFetch(cloud.caCert);
  const grant = (password: string) =>
    f(`${cloud.url}/${tenantId}/v2.0/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${c.clientId}:${c.clientSecret}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'password',
        username: 'admin@fabrikam.example',
        password,
        scope: 'openid',
      }),
    });
  const before = lines.length;
  assert.equal((await grant(PASSWORD)).status, 200);
  const wrong = await grant(`${PASSWORD}-wrong`);
  assert.equal(wrong.status, 400);
  const wrongBody = (await wrong.json()) as { request_id: string };
  await cloud.authenticator.flush();

  const events = lines.slice(before).filter((l) => l.msg === 'sign-in');
  assert.equal(events.length, 2, JSON.stringify(events));
  const [ok, bad] = events as Record<string, unknown>[];
  for (const e of [ok!, bad!]) {
    assert.equal(e.level, 30, 'info');
    assert.equal(e.tenantId, tenantId);
    assert.equal(e.method, 'password_grant');
    assert.equal(e.clientId, c.clientId);
    assert.equal(typeof e.totalMs, 'number');
    // fastify's request id: the same as on the request's own log lines, for the token endpoint.
    assert.match(String(e.reqId), /^req-/);
    const request = lines.find((l) => l.reqId === e.reqId && l.msg === 'incoming request') as
      | { req: { url: string } }
      | undefined;
    assert.ok(request, `a request line for ${e.reqId}`);
    assert.match(request.req.url, new RegExp(`/${tenantId}/v2.0/token`));
  }
  assert.notEqual(ok!.reqId, bad!.reqId);
  assert.equal(ok!.outcome, 'success');
  assert.equal(bad!.outcome, 'invalid_credentials');
  // The event's sign-in id is the one the client got and the sign-in log holds.
  assert.equal(bad!.signInId, wrongBody.request_id);
  const row = await cloud.ctx.db
    .selectFrom('signins')
    .select('outcome')
    .where('request_id', '=', wrongBody.request_id)
    .executeTakeFirstOrThrow();
  assert.equal(row.outcome, 'invalid_credentials');
  assert.ok(!raw.includes(PASSWORD), 'the password is in no log line');
});
