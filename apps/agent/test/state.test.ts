import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createCa, createCsr, generateHpkeKeyPair, signAgentCsr } from '@gatehouse/protocol';
import { renewAt } from '../src/agent.ts';
import { renewUrl } from '../src/renew.ts';
import { isRegistered, loadAgentState, saveRegistration, saveRenewal } from '../src/state.ts';

const tmp = mkdtempSync(join(tmpdir(), 'gh-agent-state-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('registration state: owner-only permissions, round trip, atomic renewal, renewal at 2/3 of the lifetime', async () => {
  const dir = join(tmp, 'state');
  assert.equal(isRegistered(dir), false);
  assert.throws(() => loadAgentState(dir), { code: 'config_invalid' });
  const ca = await createCa('tenant CA', 30);
  const { csrPem, keyPem } = await createCsr('host1');
  const cert = await signAgentCsr(ca, csrPem, { agentId: 'a1', tenantId: 't1' }, 9);
  const hpke = generateHpkeKeyPair();
  saveRegistration(dir, {
    agentId: 'a1',
    tenantId: 't1',
    cloudUrl: 'https://cloud.example.test:8443',
    gatewayUrl: 'wss://cloud.example.test:8444',
    keyPem,
    certPem: cert.certPem,
    tenantCaPem: ca.certPem,
    cloudCaPem: ca.certPem,
    hpkePrivateKey: hpke.privateKey,
  });
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  for (const f of readdirSync(dir)) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
  const s = loadAgentState(dir);
  assert.equal(s.agentId, 'a1');
  assert.deepEqual(Buffer.from(s.hpkePrivateKey), Buffer.from(hpke.privateKey));
  assert.equal(s.keyPem, keyPem);

  const c = new X509Certificate(cert.certPem);
  const from = Date.parse(c.validFrom);
  const to = Date.parse(c.validTo);
  assert.ok(Math.abs(renewAt(cert.certPem) - (from + ((to - from) * 2) / 3)) < 1);
  assert.equal(renewUrl(s.gatewayUrl), 'https://cloud.example.test:8444/agent/v1/renew');

  const next = await createCsr('host1');
  const cert2 = await signAgentCsr(ca, next.csrPem, { agentId: 'a1', tenantId: 't1' }, 9);
  const hpke2 = generateHpkeKeyPair();
  saveRenewal(dir, { keyPem: next.keyPem, certPem: cert2.certPem, hpkePrivateKey: hpke2.privateKey });
  const s2 = loadAgentState(dir);
  assert.equal(s2.keyPem, next.keyPem);
  assert.equal(s2.certPem, cert2.certPem);
  assert.deepEqual(Buffer.from(s2.hpkePrivateKey), Buffer.from(hpke2.privateKey));
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith('.new') || f.endsWith('.tmp')),
    [],
  );
  for (const f of readdirSync(dir)) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
});
