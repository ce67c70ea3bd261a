/**
 * Agent registration over real HTTPS: one-time tokens, the RFC 8628 device flow with its
 * approval page (the approver signed in through the tenant's own sign-in pages), and certificate
 * renewal over mutual TLS.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  agentIdentity,
  type DeviceAuthorizeResponse,
  type RegisterResponse,
  verifyIssuedBy,
} from '@gatehouse/protocol';
import { ADMIN_CLIENT_ID } from '../src/admin/index.ts';
import { getAgent } from '../src/store/agents.ts';
import { listAudit } from '../src/store/audit.ts';
import { createRegistrationToken } from '../src/store/registration-tokens.ts';
import { createTenant, getTenant } from '../src/store/tenants.ts';
import { createCloudUser, findByLogin } from '../src/store/users.ts';
import { pageCsp } from '../src/web/page.ts';
import { type ApprovalBrowser, approvalBrowser, csrfOf } from './approval-browser.ts';
import {
  ADMIN_PASSWORD,
  type Env,
  https,
  newAgentKeys,
  postJson,
  registerAgent,
  ScriptedAgent,
  startEnv,
} from './gateway-harness.ts';

let env: Env;
before(async () => {
  env = await startEnv();
});
after(() => env.close());

test('a valid token registers the agent: certificate from the tenant CA, row, audit', async () => {
  const { token } = await createRegistrationToken(env.ctx.db, env.tenantId, 'admin', 600, Date.now());
  const keys = await newAgentKeys('dc1.contoso.example');
  const res = await postJson(env, '/agent/v1/register', { ...keys.body, token });
  assert.equal(res.status, 200, res.text);
  const r = res.json() as RegisterResponse;
  const tenant = await getTenant(env.ctx.db, env.tenantId);
  assert.equal(r.tenantId, env.tenantId);
  assert.equal(r.tenantCa, tenant.caCertPem);
  assert.equal(r.gatewayUrl, env.ctx.config.gatewayUrl);
  assert.ok(verifyIssuedBy(r.certificate, tenant.caCertPem));
  const id = agentIdentity(r.certificate);
  assert.deepEqual([id.agentId, id.tenantId], [r.agentId, env.tenantId]);
  const row = await getAgent(env.ctx.db, r.agentId);
  assert.equal(row!.hostname, 'dc1.contoso.example');
  assert.equal(row!.version, '0.1.0-test');
  assert.equal(row!.certSerial, id.serial);
  assert.equal(row!.hpkePublicKey, keys.body.hpkePublicKey);
  assert.equal(row!.externalIp, '127.0.0.1');
  const audit = await listAudit(env.ctx.db, env.tenantId);
  assert.ok(audit.some((a) => a.action === 'agent.registered' && a.target === r.agentId));
});

test('a used token and an expired token are refused', async () => {
  const { token } = await createRegistrationToken(env.ctx.db, env.tenantId, 'admin', 600, Date.now());
  assert.equal(
    (await postJson(env, '/agent/v1/register', { ...(await newAgentKeys()).body, token })).status,
    200,
  );
  const reused = await postJson(env, '/agent/v1/register', { ...(await newAgentKeys()).body, token });
  assert.equal(reused.status, 401);
  assert.equal((reused.json() as { error: string }).error, 'registration_token_invalid');
  const old = await createRegistrationToken(env.ctx.db, env.tenantId, 'admin', 60, Date.now() - 61_000);
  const expired = await postJson(env, '/agent/v1/register', {
    ...(await newAgentKeys()).body,
    token: old.token,
  });
  assert.equal(expired.status, 401);
  assert.equal((expired.json() as { error: string }).error, 'registration_token_invalid');
});

test('bad bodies are validation_failed', async () => {
  const keys = await newAgentKeys();
  const neither = await postJson(env, '/agent/v1/register', keys.body);
  assert.equal(neither.status, 400);
  assert.equal((neither.json() as { error: string }).error, 'validation_failed');
  const { token } = await createRegistrationToken(env.ctx.db, env.tenantId, 'admin', 600, Date.now());
  const other = await newAgentKeys();
  // A syntactically fine PEM whose signature does not verify (body of one CSR, tail of another).
  const csr = keys.body.csr.slice(0, 120) + other.body.csr.slice(120);
  const badCsr = await postJson(env, '/agent/v1/register', { ...keys.body, csr, token });
  assert.equal(badCsr.status, 400);
  assert.equal((badCsr.json() as { error: string }).error, 'validation_failed');
  const notJson = await https(`${env.appUrl}/agent/v1/register`, {
    method: 'POST',
    body: '{',
    ca: env.ctx.tls.caCert,
  });
  assert.equal(notJson.status, 400);
});

const authorize = async (hostname = 'dc2.contoso.example') => {
  const res = await postJson(env, '/agent/v1/device/authorize', { tenantId: env.tenantId, hostname });
  assert.equal(res.status, 200, res.text);
  return res.json() as DeviceAuthorizeResponse;
};

const poll = async (deviceCode: string, keys?: Awaited<ReturnType<typeof newAgentKeys>>) => {
  // The test does not wait out the interval: it moves the last poll back instead.
  await env.ctx.db
    .updateTable('device_codes')
    .set({ last_poll_at: Date.now() - 10_000 })
    .execute();
  return postJson(env, '/agent/v1/register', { ...(keys ?? (await newAgentKeys())).body, deviceCode });
};

const pagePath = () => `/${env.tenantId}/agents/device`;

/** The page as someone signed out sees it. */
const openSignedOut = async (query = '') => {
  const page = await https(`${env.appUrl}${pagePath()}${query}`, { ca: env.ctx.tls.caCert });
  assert.equal(page.status, 200);
  return page;
};

/** An approver who signed in through the tenant's sign-in pages, back at the page for `query`. */
const signedIn = async (query = '', upn = env.adminUpn, password = ADMIN_PASSWORD) => {
  const browser = approvalBrowser(env);
  const { answer: page, url } = await browser.signIn(upn, password, query);
  // Present when the page showed who asks, as a browser would send it back.
  const reviewed = /name="reviewed" value="([^"]+)"/.exec(page.text)?.[1];
  return { browser, page, url, csrf: csrfOf(page.text) ?? '', reviewed };
};

const submit = (browser: ApprovalBrowser, fields: Record<string, string>) => browser.post(pagePath(), fields);

const errorOf = (res: { json(): unknown }) => (res.json() as { error: string }).error;

test('device flow: pending, slow_down, approved by the Global Administrator, registered once', async () => {
  const d = await authorize();
  assert.match(d.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  assert.equal(d.verification_uri, `${env.ctx.config.publicUrl}/${env.tenantId}/agents/device`);
  assert.equal(d.expires_in, 600);
  assert.equal(d.interval, 5);
  const keys = await newAgentKeys('dc2.contoso.example');
  assert.equal(errorOf(await poll(d.device_code, keys)), 'authorization_pending');
  const tooFast = await postJson(env, '/agent/v1/register', { ...keys.body, deviceCode: d.device_code });
  assert.equal(errorOf(tooFast), 'slow_down');

  const query = `?user_code=${d.user_code.toLowerCase().replace('-', '')}`;
  const signedOut = await openSignedOut(query);
  assert.doesNotMatch(signedOut.text, /dc2\.contoso\.example/, 'nothing about the request before sign-in');
  assert.doesNotMatch(signedOut.text, /type="password"/, 'the page asks for no password itself');
  assert.match(signedOut.text, /<button type="submit">Sign in<\/button>/);

  const { browser, page, url, csrf, reviewed } = await signedIn(query);
  assert.equal(new URL(url).pathname, pagePath(), 'back at the approval page after the sign-in');
  assert.match(page.text, /dc2\.contoso\.example/, 'the page names the machine asking');
  assert.match(page.text, /Signed in as <strong>admin@contoso\.example<\/strong>/);
  assert.doesNotMatch(page.text, /type="password"/);
  assert.equal(reviewed, d.user_code);
  const fields = { csrf, user_code: d.user_code, action: 'approve', reviewed: d.user_code };
  const noSession = await https(`${env.appUrl}${pagePath()}`, {
    method: 'POST',
    body: new URLSearchParams(fields).toString(),
    contentType: 'application/x-www-form-urlencoded',
    ca: env.ctx.tls.caCert,
  });
  assert.equal(noSession.status, 401, 'a POST without the session is refused');
  assert.doesNotMatch(noSession.text, /dc2\.contoso\.example/);
  const forged = await submit(browser, { ...fields, csrf: 'A'.repeat(43) });
  assert.equal(forged.status, 403, 'CSRF: the token must match the session');
  assert.equal(errorOf(await poll(d.device_code, keys)), 'authorization_pending');

  const ok = await submit(browser, fields);
  assert.equal(ok.status, 200, ok.text);
  assert.match(ok.text, /Agent approved/);
  const reg = await poll(d.device_code, keys);
  assert.equal(reg.status, 200, reg.text);
  const r = reg.json() as RegisterResponse;
  assert.equal(r.tenantId, env.tenantId);
  assert.equal((await getAgent(env.ctx.db, r.agentId))!.hostname, 'dc2.contoso.example');
  assert.equal(
    errorOf(await poll(d.device_code)),
    'registration_token_invalid',
    'a device code registers once',
  );
  const audit = await listAudit(env.ctx.db, env.tenantId);
  assert.ok(audit.some((a) => a.action === 'agent.device_approved' && a.actor === env.adminUpn));
  assert.ok(audit.some((a) => a.action === 'agent.registered' && a.actor === env.adminUpn));
});

test('the approval page shows the requesting address, the time, and that the host name is only claimed', async () => {
  const before = Date.now();
  const d = await authorize('dc9.contoso.example');
  const { browser, page } = await signedIn(`?user_code=${d.user_code}`);
  assert.equal(page.headers['content-security-policy'], pageCsp());
  const section = /<section class="request"[\s\S]*?<\/section>/.exec(page.text)?.[0] ?? '';
  assert.match(
    section,
    /Host name<\/dt><dd><strong>dc9\.contoso\.example<\/strong> \(the requester's own claim\)/,
  );
  assert.match(section, /Requested from<\/dt><dd>127\.0\.0\.1<\/dd>/, 'the address the cloud saw');
  const at = /Requested at<\/dt><dd>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC<\/dd>/.exec(section)?.[1];
  assert.ok(at, section);
  const t = Date.parse(`${at.replace(' ', 'T')}Z`);
  assert.ok(t >= Math.floor(before / 1000) * 1000 && t <= Date.now(), `${at} is when it was asked`);
  assert.match(section, /Gatehouse has not checked the\s+host name/);

  // An expired code shows nothing about the request.
  await env.ctx.db
    .updateTable('device_codes')
    .set({ expires_at: Date.now() - 1 })
    .where('user_code', '=', d.user_code)
    .execute();
  assert.doesNotMatch((await browser.get(`${pagePath()}?user_code=${d.user_code}`)).text, /dc9\.contoso/);
});

test('an approver who typed the code is shown who asks before the approval counts', async () => {
  const d = await authorize('typed-host');
  const { browser, csrf, reviewed } = await signedIn();
  assert.equal(reviewed, undefined, 'no code in the link: nothing reviewed yet');
  const fields = { csrf, user_code: d.user_code };
  const first = await submit(browser, { ...fields, action: 'approve' });
  assert.equal(first.status, 200);
  assert.match(first.text, /Check who is asking/);
  assert.match(first.text, /typed-host/);
  assert.doesNotMatch(first.text, /Agent approved/);
  assert.equal(errorOf(await poll(d.device_code)), 'authorization_pending', 'not approved yet');
  const second = await submit(browser, { ...fields, action: 'approve', reviewed: d.user_code });
  assert.match(second.text, /Agent approved/);
});

test('device flow: denied, expired, and approvers only', async () => {
  const denied = await authorize('denied-host');
  const admin = await signedIn();
  const res = await submit(admin.browser, { csrf: admin.csrf, user_code: denied.user_code, action: 'deny' });
  assert.equal(res.status, 200);
  assert.equal(errorOf(await poll(denied.device_code)), 'access_denied');

  const expired = await authorize('late-host');
  await env.ctx.db
    .updateTable('device_codes')
    .set({ expires_at: Date.now() - 1 })
    .where('user_code', '=', expired.user_code)
    .execute();
  assert.equal(errorOf(await poll(expired.device_code)), 'expired_token');

  const pending = await authorize('pending-host');
  await createCloudUser(env.ctx.db, env.tenantId, {
    upn: 'reader@contoso.example',
    password: 'Reader-pw-12345',
    roles: ['reader'],
  });
  const reader = await signedIn(
    `?user_code=${pending.user_code}`,
    'reader@contoso.example',
    'Reader-pw-12345',
  );
  assert.equal(reader.page.status, 403, 'a reader is signed in but may not approve');
  assert.match(reader.page.text, /Not allowed to approve/);
  assert.doesNotMatch(reader.page.text, /pending-host/, 'and is not shown who asks');
  const notAdmin = await submit(reader.browser, {
    csrf: admin.csrf,
    user_code: pending.user_code,
    action: 'approve',
    reviewed: pending.user_code,
  });
  assert.equal(notAdmin.status, 403);
  assert.equal(errorOf(await poll(pending.device_code)), 'authorization_pending');
  const unknownTenant = await postJson(env, '/agent/v1/device/authorize', {
    tenantId: 'no-such-tenant',
    hostname: 'h',
  });
  assert.equal(unknownTenant.status, 404);
});

test("the approval page's session is its own: not an admin API token, nor another tenant's", async () => {
  const { browser } = await signedIn();
  assert.deepEqual(
    browser.cookieNames().filter((n) => n.startsWith('__Secure-gh_approval')),
    ['__Secure-gh_approval'],
  );
  const session = (await browser.get(pagePath())).text;
  assert.match(session, /Signed in as/);
  const token = browser.cookieValue('__Secure-gh_approval')!;
  const api = await https(`${env.appUrl}/${env.tenantId}/api/v1/users`, {
    ca: env.ctx.tls.caCert,
    authorization: `Bearer ${token}`,
  });
  assert.equal(api.status, 401, 'the admin API refuses the approval page token');
  // Nor is an admin center token (another client of the same provider) an approval session.
  const t = (await env.oidc.forTenant(env.tenantId))!;
  const admin = (await findByLogin(env.ctx.db, env.tenantId, env.adminUpn, 'upn'))!;
  const grant = new t.provider.Grant({ accountId: admin.id, clientId: ADMIN_CLIENT_ID });
  grant.addOIDCScope('openid');
  const adminCenterToken = await new t.provider.AccessToken({
    accountId: admin.id,
    client: (await t.provider.Client.find(ADMIN_CLIENT_ID))!,
    grantId: await grant.save(),
    gty: 'authorization_code',
    scope: 'openid',
  }).save();
  const borrowed = await https(`${env.appUrl}${pagePath()}`, {
    ca: env.ctx.tls.caCert,
    cookie: `__Secure-gh_approval=${adminCenterToken}`,
  });
  assert.doesNotMatch(borrowed.text, /Signed in as/, 'an admin center token is not an approval session');
  const other = await createTenant(env.ctx, {
    name: 'Fabrikam',
    domain: 'fabrikam.example',
    admin: { upn: 'admin@fabrikam.example', password: 'Fabrikam-Pa55word-1' },
  });
  const elsewhere = await https(`${env.appUrl}/${other.tenantId}/agents/device`, {
    ca: env.ctx.tls.caCert,
    cookie: `__Secure-gh_approval=${token}`,
  });
  assert.equal(elsewhere.status, 200);
  assert.doesNotMatch(elsewhere.text, /Signed in as/, "one tenant's session means nothing to another");
});

test('a sign-in finishes only in the browser that began it', async () => {
  const began = approvalBrowser(env);
  const { url: callback } = await began.signIn(env.adminUpn, ADMIN_PASSWORD, '', { stopAtCallback: true });
  assert.equal(new URL(callback).pathname, `${pagePath()}/callback`);
  assert.ok(new URL(callback).searchParams.get('code'), 'the provider sent a code');
  const other = approvalBrowser(env);
  const elsewhere = await other.get(callback);
  assert.equal(elsewhere.status, 400);
  assert.match(elsewhere.text, /began in another browser/);
  assert.ok(!other.cookieNames().includes('__Secure-gh_approval'), 'no session for the other browser');
  const back = await began.follow(await began.get(callback));
  assert.equal(back.answer.status, 200);
  assert.match(back.answer.text, /Signed in as <strong>admin@contoso\.example<\/strong>/);
});

test('renewal over mutual TLS: new certificate and HPKE key, the old certificate refused at once', async () => {
  const creds = await registerAgent(env);
  const keys = await newAgentKeys();
  const url = `https://127.0.0.1:${env.gatewayPort}/agent/v1/renew`;
  const body = JSON.stringify({ csr: keys.body.csr, hpkePublicKey: keys.body.hpkePublicKey });
  const anonymous = await https(url, { method: 'POST', body, ca: env.ctx.tls.caCert });
  assert.equal(anonymous.status, 401);
  const res = await https(url, {
    method: 'POST',
    body,
    ca: env.ctx.tls.caCert,
    cert: creds.certPem,
    key: creds.keyPem,
  });
  assert.equal(res.status, 200, res.text);
  const { certificate } = res.json() as { certificate: string };
  const id = agentIdentity(certificate);
  assert.equal(id.agentId, creds.agentId);
  const row = await getAgent(env.ctx.db, creds.agentId);
  assert.equal(row!.certSerial, id.serial);
  assert.equal(row!.hpkePublicKey, keys.body.hpkePublicKey);
  const old = new ScriptedAgent(env, creds);
  await assert.rejects(old.opened, (e: { status?: number }) => e.status === 401);
  const renewed = new ScriptedAgent(env, { certPem: certificate, keyPem: keys.keyPem });
  assert.equal((await renewed.hello()).agentId, creds.agentId);
  renewed.close();
  await renewed.closed;
});
