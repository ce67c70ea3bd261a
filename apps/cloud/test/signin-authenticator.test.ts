import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { agentOutcomes, isGatehouseError } from '@gatehouse/protocol';
import { createSmartLockout } from '../src/lockout/smart-lockout.ts';
import { type AuthenticatorService, createAuthenticator } from '../src/signin/authenticator.ts';
import { type LockoutPolicy, smartLockoutPolicy } from '../src/signin/lockout.ts';
import type { ValidationAnswer } from '../src/signin/types.ts';
import { addDomain, setDomainKind, verifyDomain } from '../src/store/domains.ts';
import { listSignIns } from '../src/store/sign-ins.ts';
import { createTenant, updateSettings } from '../src/store/tenants.ts';
import { upsertSyncedUsers } from '../src/store/users.ts';
import { openTestState, scriptedDispatcher, type TestState } from './directory-fixtures.ts';

const CANARY = 'Canary-Pa55word-7f3c91';
const ADMIN_PW = 'Break-glass-pw-1';
let s: TestState;
let tenantId: string;
let auth: AuthenticatorService;
let answer: (password: string) => ValidationAnswer = () => ({ outcome: 'no_agent' });
const dispatcher = scriptedDispatcher((req) => answer(req.password));

const settings = async (v: Parameters<typeof updateSettings>[2]) => {
  await updateSettings(s.ctx.db, tenantId, v, { activeAgents: 1 });
  auth.invalidate(tenantId);
};
const signIn = (username: string, password: string, method: 'browser' | 'password_grant' = 'browser') =>
  auth.authenticate({ tenantId, username, password, method, clientId: 'app-1', clientIp: '198.51.100.4' });

before(async () => {
  s = await openTestState({ agentTimeoutMs: 5_000 });
  ({ tenantId } = await createTenant(s.ctx, {
    name: 'Contoso',
    domain: 'contoso.com',
    admin: { upn: 'admin@contoso.com', password: ADMIN_PW },
  }));
  await addDomain(s.ctx.db, tenantId, 'fabrikam-partner.com');
  await verifyDomain(s.ctx.db, tenantId, 'fabrikam-partner.com', { force: true });
  await setDomainKind(s.ctx.db, tenantId, 'fabrikam-partner.com', {
    kind: 'federated',
    federationUrl: 'https://sts.fabrikam-partner.com/adfs/ls',
  });
  await addDomain(s.ctx.db, tenantId, 'unverified.com');
  await setDomainKind(s.ctx.db, tenantId, 'unverified.com', {
    kind: 'federated',
    federationUrl: 'https://evil.example/',
  });
  await upsertSyncedUsers(s.ctx.db, tenantId, [
    {
      anchor: 'guid-alice',
      upn: 'alice@contoso.com',
      dn: 'CN=Alice,OU=Staff,DC=contoso,DC=com',
      onPremName: 'CONTOSO\\alice',
      enabled: true,
    },
    { anchor: 'guid-bob', upn: 'bob@contoso.com', dn: 'CN=Bob,OU=Staff,DC=contoso,DC=com', enabled: false },
    { anchor: 'guid-fed', upn: 'fred@fabrikam-partner.com', dn: 'CN=Fred,DC=contoso,DC=com', enabled: true },
  ]);
  auth = createAuthenticator(s.ctx, { dispatcher });
});
after(async () => {
  await auth.close();
  await s.cleanup();
});

const fail = (r: Awaited<ReturnType<typeof signIn>>) => (r.ok ? 'success' : r.code);

test('cloud-only admin: right password signs in, wrong one is invalid_credentials', async () => {
  const ok = await signIn('Admin@Contoso.com', ADMIN_PW);
  assert.ok(ok.ok);
  assert.equal(ok.user.upn, 'admin@contoso.com');
  assert.deepEqual(ok.user.roles, ['global_admin']);
  assert.equal(ok.user.source, 'cloud');
  assert.deepEqual(await auth.findUser(tenantId, ok.user.id), ok.user);
  assert.equal(fail(await signIn('admin@contoso.com', `${ADMIN_PW}x`)), 'invalid_credentials');
  assert.equal(dispatcher.requests.length, 0, 'cloud accounts never go on premises');
});

test('an unknown user answers exactly like a wrong password, in about the same time', async () => {
  const time = async (name: string) => {
    const t = performance.now();
    const r = await signIn(name, 'Wrong-password-1');
    assert.equal(fail(r), 'invalid_credentials');
    return performance.now() - t;
  };
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 7; i++) {
    known.push(await time('admin@contoso.com'));
    unknown.push(await time(`nobody${i}@contoso.com`));
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
  const [k, u] = [median(known), median(unknown)];
  // Both pay one scrypt verification; without the dummy check the unknown path would take ~1 ms.
  assert.ok(u > k * 0.5 && u < k * 2, `known ${k.toFixed(1)} ms vs unknown ${u.toFixed(1)} ms`);
});

test('password grant is refused before any work when the tenant blocks legacy authentication', async () => {
  const r = await signIn('admin@contoso.com', ADMIN_PW, 'password_grant');
  assert.equal(fail(r), 'legacy_auth_blocked');
  await auth.flush();
  const [row] = await listSignIns(s.ctx.db, tenantId, { limit: 1 });
  assert.deepEqual(
    [row?.requestId, row?.method, row?.userId],
    [r.requestId, 'password_grant', null],
    'not even a user lookup',
  );
  await settings({ legacyAuth: true });
  assert.ok((await signIn('admin@contoso.com', ADMIN_PW, 'password_grant')).ok);
  await settings({ legacyAuth: false });
});

test('synced users need pass-through authentication enabled', async () => {
  await settings({ ptaEnabled: false });
  assert.equal(fail(await signIn('alice@contoso.com', CANARY)), 'passthrough_disabled');
  assert.equal(dispatcher.requests.length, 0);
});

test('synced users are validated on premises and every outcome is passed through', async () => {
  await settings({ ptaEnabled: true });
  const outcomes = [
    ...agentOutcomes,
    'no_agent',
    'agent_timeout',
    'agent_overloaded',
    'invalid_response',
  ] as const;
  for (const outcome of outcomes) {
    answer = (pw) => {
      assert.equal(pw, CANARY);
      return {
        outcome,
        agentId: 'agent-7',
        server: 'ldaps://dc1.contoso.com',
        directoryCode: '49/52e',
        agentMs: 3.5,
        directoryMs: 2.25,
      };
    };
    const before = Date.now();
    const r = await signIn('alice@contoso.com', CANARY);
    assert.equal(fail(r), outcome);
    const req = dispatcher.requests.at(-1)!;
    assert.deepEqual(req.user, {
      upn: 'alice@contoso.com',
      dn: 'CN=Alice,OU=Staff,DC=contoso,DC=com',
      anchor: 'guid-alice',
      onPremName: 'CONTOSO\\alice',
    });
    assert.equal(req.tenantId, tenantId);
    assert.equal(req.requestId, r.requestId);
    assert.ok(req.deadline >= before + 5_000 && req.deadline <= Date.now() + 5_000);
  }
  assert.equal(dispatcher.requests.length, outcomes.length);
  await auth.flush();
  const [row] = await listSignIns(s.ctx.db, tenantId, { limit: 1 });
  assert.equal(row?.outcome, 'invalid_response');
  assert.deepEqual(
    [
      row?.agentId,
      row?.server,
      row?.directoryCode,
      row?.agentMs,
      row?.directoryMs,
      row?.method,
      row?.clientIp,
      row?.clientId,
    ],
    ['agent-7', 'ldaps://dc1.contoso.com', '49/52e', 3.5, 2.25, 'browser', '198.51.100.4', 'app-1'],
  );
});

test('cloud-disabled synced users: the directory answers first, the state is revealed only for the right password', async () => {
  answer = () => ({ outcome: 'invalid_credentials' });
  assert.equal(fail(await signIn('bob@contoso.com', 'wrong')), 'invalid_credentials');
  answer = () => ({ outcome: 'success', agentId: 'agent-7' });
  assert.equal(fail(await signIn('bob@contoso.com', 'right')), 'account_disabled');
  const ok = await signIn('alice@contoso.com', 'right');
  assert.ok(ok.ok && ok.user.source === 'synced');
});

test('odd answers: an empty password is never sent, a throwing or confused dispatcher is an infrastructure error', async () => {
  const n = dispatcher.requests.length;
  assert.equal(fail(await signIn('alice@contoso.com', '')), 'invalid_credentials');
  assert.equal(dispatcher.requests.length, n, 'an empty password would be an anonymous bind');
  answer = () => {
    throw new Error('boom');
  };
  assert.equal(fail(await signIn('alice@contoso.com', 'x')), 'agent_error');
  answer = () => ({ outcome: 'made_up' as never });
  assert.equal(fail(await signIn('alice@contoso.com', 'x')), 'invalid_response');
  await assert.rejects(
    auth.authenticate({ tenantId, username: 'a', password: 'b', method: 'ntlm' as never }),
    (e) => isGatehouseError(e) && e.code === 'validation_failed',
  );
  await assert.rejects(
    auth.authenticate({ tenantId: 'missing', username: 'a', password: 'b', method: 'browser' }),
    (e) => isGatehouseError(e) && e.code === 'not_found',
  );
});

test('home realm discovery: verified federated domains redirect, all else asks for a password', async () => {
  assert.deepEqual(await auth.discover(tenantId, 'Fred@Fabrikam-Partner.com'), {
    kind: 'federated',
    redirect: 'https://sts.fabrikam-partner.com/adfs/ls',
  });
  assert.deepEqual(await auth.discover(tenantId, 'x@unverified.com'), { kind: 'password' });
  assert.deepEqual(await auth.discover(tenantId, 'nobody@contoso.com'), { kind: 'password' });
  assert.deepEqual(await auth.discover(tenantId, 'no-at-sign'), { kind: 'password' });
  const n = dispatcher.requests.length;
  assert.equal(fail(await signIn('fred@fabrikam-partner.com', 'x')), 'federated_user');
  assert.equal(dispatcher.requests.length, n);
});

test('the lockout seam is consulted before dispatch and told every outcome', async () => {
  const calls: string[] = [];
  const locking: LockoutPolicy = {
    check: async (a) => {
      calls.push(`check ${a.login} ${a.userId ? 'known' : 'unknown'}`);
      return a.login.startsWith('alice') ? { kind: 'locked', until: 1 } : { kind: 'admit', ticket: 't' };
    },
    recordFailure: async (_a, ticket, outcome) => void calls.push(`failure ${String(ticket)} ${outcome}`),
    recordSuccess: async (_a, ticket) => void calls.push(`success ${String(ticket)}`),
  };
  const a2 = createAuthenticator(s.ctx, {
    dispatcher,
    lockout: locking,
    signInLog: { write: async () => {}, flush: async () => {}, close: async () => {} },
  });
  const n = dispatcher.requests.length;
  assert.equal(
    fail(
      await a2.authenticate({ tenantId, username: 'alice@contoso.com', password: 'x', method: 'browser' }),
    ),
    'locked_out',
  );
  assert.equal(dispatcher.requests.length, n, 'a locked-out user costs the directory nothing');
  await a2.authenticate({ tenantId, username: 'admin@contoso.com', password: ADMIN_PW, method: 'browser' });
  await a2.authenticate({ tenantId, username: 'ghost@contoso.com', password: 'x', method: 'browser' });
  assert.deepEqual(calls, [
    'check alice@contoso.com known',
    'check admin@contoso.com known',
    'success t',
    'check ghost@contoso.com unknown',
    'failure t invalid_credentials',
  ]);

  // With smart lockout behind the seam: two wrong passwords (threshold 2) lock alice before any third bind.
  await settings({ lockoutThreshold: 2 });
  const a3 = createAuthenticator(s.ctx, {
    dispatcher,
    lockout: smartLockoutPolicy(createSmartLockout(s.ctx.db, s.ctx.secrets, s.ctx.now)),
  });
  answer = () => ({ outcome: 'invalid_credentials' });
  const m = dispatcher.requests.length;
  const go = (pw: string) =>
    a3.authenticate({
      tenantId,
      username: 'alice@contoso.com',
      password: pw,
      method: 'browser',
      clientIp: '192.0.2.1',
    });
  assert.equal(fail(await go('wrong-1')), 'invalid_credentials');
  assert.equal(fail(await go('wrong-2')), 'invalid_credentials');
  assert.equal(fail(await go('wrong-3')), 'locked_out');
  assert.equal(dispatcher.requests.length, m + 2);
  await a3.close();
  await settings({ lockoutThreshold: 10 });
});

test('an unknown name is counted and locked exactly like a user, and a locked answer takes as long as a wrong password', async () => {
  await settings({ lockoutThreshold: 3, legacyAuth: true });
  // The directory takes about 40 ms to refuse a wrong password.
  answer = () => ({ outcome: 'invalid_credentials' });
  const slow = scriptedDispatcher(async () => {
    await new Promise((r) => setTimeout(r, 40));
    return { outcome: 'invalid_credentials' };
  });
  const a4 = createAuthenticator(s.ctx, {
    dispatcher: slow,
    lockout: smartLockoutPolicy(createSmartLockout(s.ctx.db, s.ctx.secrets, s.ctx.now)),
    signInLog: { write: async () => {}, flush: async () => {}, close: async () => {} },
  });
  const timed = async (username: string, password: string, method: 'browser' | 'password_grant') => {
    const t = performance.now();
    const r = await a4.authenticate({ tenantId, username, password, method, clientIp: '203.0.113.9' });
    return { code: fail(r), ms: performance.now() - t };
  };
  const spray = async (username: string, method: 'browser' | 'password_grant') => {
    const out: Array<{ code: string; ms: number }> = [];
    for (let i = 0; i < 8; i++) out.push(await timed(username, `Spray-${i}!`, method));
    // The same wrong password again is answered without a bind, like any repeat.
    out.push(await timed(username, 'Spray-7!', method));
    return out;
  };
  try {
    for (const method of ['browser', 'password_grant'] as const) {
      const known = await spray(method === 'browser' ? 'bob@contoso.com' : 'admin@contoso.com', method);
      const unknown = await spray(`nobody-${method}@contoso.com`, method);
      const codes = (xs: typeof known) => xs.map((x) => x.code);
      assert.deepEqual(codes(known), [
        ...Array(3).fill('invalid_credentials'),
        ...Array(6).fill('locked_out'),
      ]);
      assert.deepEqual(codes(unknown), codes(known), `${method}: same answers for a name nobody has`);
      // Locked answers are held to a recorded wrong-password time (about 40 ms here), never 1-3 ms.
      const lockedMs = [...known, ...unknown].filter((x) => x.code === 'locked_out').map((x) => x.ms);
      assert.ok(Math.min(...lockedMs) > 20, `locked answers took ${lockedMs.map((m) => m.toFixed(1))} ms`);
    }
    assert.equal(slow.requests.length, 3, 'only the synced user cost binds, 3 of them');
    // The unknown name's counter is stored under a keyed hash, never the name.
    const subjects = await s.ctx.db
      .selectFrom('lockout_counters')
      .select('user_id')
      .where('tenant_id', '=', tenantId)
      .execute();
    assert.ok(subjects.every((r) => !r.user_id.includes('nobody')));
    assert.ok(subjects.some((r) => r.user_id.startsWith('~')));
  } finally {
    await a4.close();
    await settings({ lockoutThreshold: 10, legacyAuth: false });
  }
});

test('every attempt is logged, in batches, and the password never reaches the database', async () => {
  answer = () => ({ outcome: 'invalid_credentials', agentId: 'agent-7' });
  await Promise.all(
    Array.from({ length: 300 }, (_, i) =>
      signIn(i % 15 ? 'alice@contoso.com' : `ghost${i}@contoso.com`, CANARY),
    ),
  );
  await auth.flush();
  const rows = await listSignIns(s.ctx.db, tenantId, { limit: 1000 });
  assert.ok(rows.length >= 300 + 30, `${rows.length} rows`);
  assert.ok(rows.every((r) => r.totalMs >= 0 && r.requestId));
  assert.equal(rows.filter((r) => r.upn.startsWith('ghost')).length, 20);
  assert.equal(s.dbBytes().includes(CANARY), false, 'canary password found in the database files');
  assert.equal(JSON.stringify(rows).includes(CANARY), false);
});
