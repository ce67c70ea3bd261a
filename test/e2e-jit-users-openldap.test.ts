/**
 * Just-in-time users on OpenLDAP (slapd, the real agent, the cloud): a user added to the directory
 * after the sync signs in before any run has brought them. With the tenant switch off (the
 * default) the name answers invalid_credentials, like any unknown name; turned on (operator CLI, audited) a wrong password still answers invalid_credentials
 * and creates nobody; the right password signs in, creates the synced user (anchor, DN, mail) and
 * audits user.jit_created; the DOMAIN\name form finds the user by uid.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { main } from '../apps/cloud/src/cli.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'example.test';
const PW = `Jit-${Math.random().toString(36).slice(2, 8)}-Pw1`;
let slapd: SlapdInstance;
let stack: Stack;

before(async () => {
  slapd = await startSlapd({ users: [{ uid: 'ann', password: PW, mail: `ann@${DOMAIN}` }] });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
    },
    expectUsers: [`ann@${DOMAIN}`],
    // No run brings the new users: only the sign-in can.
    agent: { sync: { deltaIntervalMinutes: 0 } },
    lockout: { threshold: 50, durationS: 60 },
  });
  await stack.firstSync();
  for (const uid of ['fay', 'gil', 'hal'])
    await slapd.ldapModify(
      `dn: uid=${uid},${slapd.peopleDn}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: New\nmail: ${uid}@${DOMAIN}\nuserPassword: ${PW}\n\n`,
    );
});

after(async () => {
  await stack?.stop();
  await slapd?.stop();
});

const user = (upn: string) =>
  stack.cloud.ctx.db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', stack.tenantId)
    .where('upn', '=', upn)
    .executeTakeFirst();
const auditOf = (action: string) =>
  stack.cloud.ctx.db
    .selectFrom('audit')
    .selectAll()
    .where('tenant_id', '=', stack.tenantId)
    .where('action', '=', action)
    .execute();

const cli = async (...args: string[]) => {
  const out: string[] = [];
  const io = {
    stdout: (s: string) => void out.push(s),
    stderr: (s: string) => void out.push(s),
    readStdin: async () => '',
  };
  const env = {
    GATEHOUSE_CLOUD_DATA_DIR: stack.cloud.ctx.config.dataDir,
    GATEHOUSE_CLOUD_LOG_LEVEL: 'silent',
  };
  const code = await main(args, io, env);
  assert.equal(code, 0, out.join(''));
  stack.cloud.authenticator.invalidate(stack.tenantId);
  return out.join('');
};

test('off (the default): a name not synced answers invalid_credentials and creates nobody', async () => {
  assert.match(await cli('tenant', 'show', '--tenant', stack.tenantId), /just-in-time users: off/);
  // hal, not fay: smart lockout keeps this (right) password as a wrong one for the name for 15
  // minutes, and answers its repeat at once, switch or no switch.
  const r = await stack.passwordGrant(`hal@${DOMAIN}`, PW);
  assert.equal(r.code, 'invalid_credentials');
  assert.equal(await user(`hal@${DOMAIN}`), undefined);
  const [row] = await stack.signIns();
  assert.equal(row!.outcome, 'invalid_credentials');
  assert.equal(row!.agent_id, null, 'no agent was asked');
});

test('on: a wrong password answers invalid_credentials and creates nobody', async () => {
  assert.match(await cli('settings', 'set', '--tenant', stack.tenantId, '--jit-users', 'on'), /jit-users on/);
  const [change] = await auditOf('settings.update');
  assert.ok(change && String(change.detail).includes('"jitUsers":true'), 'the change is audited');
  const r = await stack.passwordGrant(`fay@${DOMAIN}`, 'Wrong-Password-1');
  assert.equal(r.code, 'invalid_credentials');
  assert.equal(await user(`fay@${DOMAIN}`), undefined);
  const [row] = await stack.signIns();
  assert.ok(row!.agent_id, 'an agent looked the name up');
  assert.equal(row!.outcome, 'invalid_credentials');
  // A name nobody has is a wrong password too.
  assert.equal((await stack.passwordGrant(`nobody@${DOMAIN}`, PW)).code, 'invalid_credentials');
  assert.deepEqual(await auditOf('user.jit_created'), []);
});

test('on: the right password signs in and creates the user, audited', async () => {
  const r = await stack.passwordGrant(`fay@${DOMAIN}`, PW);
  assert.equal(r.code, 'success', JSON.stringify(r.body));
  assert.ok(r.body.access_token);
  const fay = await user(`fay@${DOMAIN}`);
  assert.ok(fay, 'the user exists after the sign-in');
  assert.equal(fay.source, 'synced');
  assert.match(fay.source_anchor ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(fay.on_prem_dn, `uid=fay,${slapd.peopleDn}`);
  assert.equal(fay.mail, `fay@${DOMAIN}`);
  const created = await auditOf('user.jit_created');
  assert.equal(created.length, 1);
  assert.equal(created[0]!.target, fay.id);
  const [row] = await stack.signIns();
  assert.equal(row!.user_id, fay.id);
  // The next sign-in is an ordinary synced user's.
  assert.equal((await stack.passwordGrant(`fay@${DOMAIN}`, PW)).code, 'success');
  assert.equal((await auditOf('user.jit_created')).length, 1);
});

test('on: DOMAIN\\name finds the user by uid', async () => {
  const r = await stack.passwordGrant('EXAMPLE\\gil', PW);
  assert.equal(r.code, 'success', JSON.stringify(r.body));
  assert.ok(await user(`gil@${DOMAIN}`));
});
