/**
 * Metrics under real sign-in load: password grants, sign-in pages and a cloud-only account, through
 * two real agents and a real slapd. A scrape of the metrics listener taken during the load answers;
 * the one after it finds every family, and the counts equal what was done: sign-ins by method,
 * check and outcome, histogram counts, validations sent and answered, tokens issued and refused,
 * lockout admissions, agent connections, and tenants by active agents. The public port has no
 * /metrics.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createCloudUser } from '../apps/cloud/src/store/users.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { parseScrape, type Scrape } from './harness/prometheus.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'example.test';
const PASSWORD = `Met-${Math.random().toString(36).slice(2, 10)}-Pw9`;
const CLOUD_PASSWORD = `Cloud-${Math.random().toString(36).slice(2, 10)}-Pw9`;
const USERS = ['u1', 'u2', 'u3', 'u4'];
const ROUNDS = 10;

/** Every family the cloud defines (metrics/families.ts); each must be on every scrape. */
const FAMILIES = [
  'gatehouse_signins_total',
  'gatehouse_signin_duration_seconds',
  'gatehouse_agent_duration_seconds',
  'gatehouse_directory_duration_seconds',
  'gatehouse_dispatch_retries_total',
  'gatehouse_dispatch_failovers_total',
  'gatehouse_dispatch_held_total',
  'gatehouse_cluster_relays_total',
  'gatehouse_agent_frames_total',
  'gatehouse_agent_malformed_frames_total',
  'gatehouse_agent_channel_errors_total',
  'gatehouse_agent_sessions_total',
  'gatehouse_lockout_decisions_total',
  'gatehouse_lockout_locks_total',
  'gatehouse_sync_runs_total',
  'gatehouse_sync_duration_seconds',
  'gatehouse_sync_users_total',
  'gatehouse_tokens_issued_total',
  'gatehouse_token_errors_total',
  'gatehouse_db_query_duration_seconds',
  'gatehouse_db_pool_connections',
  'gatehouse_agent_connections',
  'gatehouse_tenants_by_active_agents',
  'gatehouse_ready',
  'gatehouse_process_failures_total',
  'process_cpu_seconds_total',
  'nodejs_eventloop_lag_seconds',
];

let slapd: SlapdInstance;
let stack: Stack;
let f: typeof fetch;

before(async () => {
  slapd = await startSlapd({
    users: USERS.map((uid) => ({ uid, cn: uid, mail: `${uid}@${DOMAIN}`, password: PASSWORD })),
  });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
    },
    expectUsers: USERS.map((u) => `${u}@${DOMAIN}`),
    agents: 2,
  });
  await createCloudUser(stack.cloud.ctx.db, stack.tenantId, {
    upn: `ops@${DOMAIN}`,
    password: CLOUD_PASSWORD,
  });
  f = pinnedFetch(stack.cloud.caCert);
});

after(async () => {
  await stack?.stop();
  await slapd?.stop();
});

const scrape = async (): Promise<Scrape> => {
  const res = await f(`${stack.cloud.metricsUrl}/metrics`);
  assert.equal(res.status, 200);
  return parseScrape(await res.text());
};

test('the public port has no /metrics; the metrics listener is on loopback', async () => {
  const res = await f(`${stack.cloud.url}/metrics`);
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error, 'not_found');
  assert.match(String(stack.cloud.metricsUrl), /^https:\/\/127\.0\.0\.1:\d+$/);
});

test('a scrape during sign-in load finds every family, with counts equal to what was done', async () => {
  await stack.passwordGrant(`u1@${DOMAIN}`, PASSWORD); // warm the tenant's provider
  const logBefore = (await stack.signIns()).length;
  const s0 = await scrape();

  // Failures first (a success clears them): two distinct wrong passwords and a name nobody has.
  const wrong = [
    await stack.passwordGrant(`u3@${DOMAIN}`, `${PASSWORD}-wrong-1`),
    await stack.passwordGrant(`u4@${DOMAIN}`, `${PASSWORD}-wrong-2`),
    await stack.passwordGrant(`nobody@${DOMAIN}`, PASSWORD),
  ];
  assert.deepEqual(
    wrong.map((w) => w.code),
    ['invalid_credentials', 'invalid_credentials', 'invalid_credentials'],
  );

  const codes: string[] = [];
  const load = Promise.all(
    USERS.map(async (u) => {
      for (let i = 0; i < ROUNDS; i++)
        codes.push((await stack.passwordGrant(`${u}@${DOMAIN}`, PASSWORD)).code);
    }),
  );
  // While the load runs: the listener answers and already counts.
  await new Promise((r) => setTimeout(r, 300));
  const during = await scrape();
  assert.ok(during.families.has('gatehouse_signins_total'));
  const pages = [
    await stack.signInPage(`u1@${DOMAIN}`, PASSWORD),
    await stack.signInPage(`u2@${DOMAIN}`, PASSWORD),
  ];
  await load;
  assert.deepEqual(new Set(codes), new Set(['success']));
  assert.deepEqual(
    pages.map((p) => p.code),
    ['success', 'success'],
  );
  const cloud = [
    await stack.passwordGrant(`ops@${DOMAIN}`, CLOUD_PASSWORD),
    await stack.passwordGrant(`ops@${DOMAIN}`, CLOUD_PASSWORD),
  ];
  assert.deepEqual(
    cloud.map((c) => c.code),
    ['success', 'success'],
  );
  assert.equal((await f(`${stack.cloud.metricsUrl}/readyz`)).status, 200);

  const s1 = await scrape();
  for (const name of FAMILIES) assert.ok(s1.families.has(name), `family ${name} is exposed`);
  const d = (name: string, labels?: Record<string, string>) =>
    s1.value(name, labels) - s0.value(name, labels);

  const grants = USERS.length * ROUNDS;
  const agentChecks = grants + 2 + pages.length; // successes, two wrong passwords, two pages
  const all = agentChecks + 1 + cloud.length; // and the unknown name, and the cloud account
  const S = 'gatehouse_signins_total';
  assert.equal(d(S, { method: 'password_grant', check: 'agent', outcome: 'success' }), grants);
  assert.equal(d(S, { method: 'password_grant', check: 'agent', outcome: 'invalid_credentials' }), 2);
  assert.equal(d(S, { method: 'password_grant', check: 'none', outcome: 'invalid_credentials' }), 1);
  assert.equal(d(S, { method: 'page', check: 'agent', outcome: 'success' }), pages.length);
  assert.equal(d(S, { method: 'password_grant', check: 'cloud', outcome: 'success' }), cloud.length);
  assert.equal(d(S), all, 'nothing else was counted');

  // Histograms count what the sign-in log recorded.
  const rows = (await stack.signIns()).slice(0, (await stack.signIns()).length - logBefore);
  assert.equal(rows.length, all);
  const withAgentMs = rows.filter((r) => r.agent_ms !== null).length;
  assert.equal(withAgentMs, agentChecks);
  assert.equal(d('gatehouse_signin_duration_seconds_count'), all);
  assert.equal(d('gatehouse_agent_duration_seconds_count'), agentChecks);
  assert.equal(d('gatehouse_directory_duration_seconds_count'), agentChecks);
  const mean = (n: string) => d(`${n}_sum`) / d(`${n}_count`);
  const agentMean = mean('gatehouse_agent_duration_seconds');
  assert.ok(agentMean > 0 && agentMean < 5, `agent mean ${agentMean} s`);
  assert.ok(mean('gatehouse_directory_duration_seconds') <= agentMean, 'the bind is part of the agent time');
  assert.ok(
    d('gatehouse_signin_duration_seconds_sum', { check: 'agent' }) >=
      d('gatehouse_agent_duration_seconds_sum'),
    'end to end includes the agent',
  );
  // Within a bucket's reach of the log's own figures (the log's total_ms is taken a moment earlier).
  const logTotal = rows.reduce((n, r) => n + Number(r.total_ms), 0) / 1000;
  const histTotal = d('gatehouse_signin_duration_seconds_sum');
  assert.ok(histTotal >= logTotal && histTotal < logTotal + all * 0.25, `${histTotal} vs log ${logTotal}`);

  // Every validation went out once and came back once: no retries, no failovers.
  assert.equal(d('gatehouse_agent_frames_total', { direction: 'out', type: 'validate' }), agentChecks);
  assert.equal(d('gatehouse_agent_frames_total', { direction: 'in', type: 'result' }), agentChecks);
  assert.equal(d('gatehouse_dispatch_retries_total'), 0);
  assert.equal(d('gatehouse_dispatch_failovers_total'), 0);
  assert.equal(d('gatehouse_agent_malformed_frames_total'), 0);
  assert.equal(d('gatehouse_agent_channel_errors_total'), 0);

  // Tokens: every password grant that succeeded, refusals by OAuth error.
  assert.equal(d('gatehouse_tokens_issued_total', { grant: 'password' }), grants + cloud.length);
  assert.equal(d('gatehouse_token_errors_total', { grant: 'password', error: 'invalid_grant' }), 3);

  // Smart lockout admitted every attempt and locked nobody.
  assert.equal(d('gatehouse_lockout_decisions_total', { decision: 'admit' }), all);
  assert.equal(d('gatehouse_lockout_decisions_total'), all);
  assert.equal(d('gatehouse_lockout_locks_total'), 0);

  // Gauges: this node's connections, the tenant by its active agents.
  const ready = stack.cloud.gateway.connections().filter((c) => c.ready).length;
  assert.equal(ready, 2);
  assert.equal(s1.value('gatehouse_agent_connections', { state: 'ready' }), ready);
  assert.equal(s1.value('gatehouse_tenants_by_active_agents', { agents: '2' }), 1);
  for (const b of ['0', '1', '3+'])
    assert.equal(s1.value('gatehouse_tenants_by_active_agents', { agents: b }), 0);
  assert.equal(s1.value('gatehouse_ready'), 1);
  assert.equal(s1.families.has('gatehouse_nats_connected'), false, 'the embedded shape has no NATS');

  // The first sync of each agent, before the load.
  assert.ok(s1.value('gatehouse_sync_runs_total', { mode: 'full', result: 'applied' }) >= 1);
  assert.ok(s1.value('gatehouse_sync_duration_seconds_count') >= 1);
  assert.ok(s1.value('gatehouse_sync_users_total', { mode: 'full', change: 'created' }) >= USERS.length);
  assert.equal(s1.value('gatehouse_agent_sessions_total', { event: 'ready' }), 2);

  // The database: every sign-in read and wrote; SQLite has no pool to report.
  assert.ok(d('gatehouse_db_query_duration_seconds_count', { op: 'select', result: 'ok' }) >= all);
  assert.ok(d('gatehouse_db_query_duration_seconds_count', { op: 'insert', result: 'ok' }) > 0);
  assert.equal(s1.has('gatehouse_db_pool_connections'), false);
});
