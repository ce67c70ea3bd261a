import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isGatehouseError } from '@gatehouse/protocol';
import { configFromEnv, loadAgentConfig } from '../src/config.ts';

const tmp = mkdtempSync(join(tmpdir(), 'gh-agent-cfg-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const issues = (fn: () => unknown): { path: string; message: string }[] => {
  try {
    fn();
  } catch (err) {
    assert.ok(isGatehouseError(err), String(err));
    assert.equal(err.code, 'config_invalid');
    return err.detail as { path: string; message: string }[];
  }
  assert.fail('expected config_invalid');
};

test('every problem is reported at once, each with its path', () => {
  const file = join(tmp, 'bad.json');
  writeFileSync(
    file,
    JSON.stringify({
      directory: { kind: 'novell', urls: ['http://dc1'], baseDns: [], timeoutMs: 5, bindPasswordFile: 'x' },
      sync: { deletionThreshold: 2 },
      unknownKey: 1,
    }),
  );
  const paths = issues(() => loadAgentConfig({ configFile: file, env: {} })).map((i) => i.path);
  for (const p of [
    'directory.kind',
    'directory.urls.0',
    'directory.bindDn',
    'directory.baseDns',
    'directory.timeoutMs',
    'sync.deletionThreshold',
    '(root)',
  ]) {
    assert.ok(paths.includes(p), `${p} missing from ${paths.join(', ')}`);
  }
});

test('an unreadable explicit config file is a config error, not a crash', () => {
  const [i] = issues(() => loadAgentConfig({ configFile: join(tmp, 'missing.json'), env: {} }));
  assert.match(i.path, /missing\.json$/);
});

test('file, then environment (nested with __, lists with ;), then overrides; defaults by kind; frozen', () => {
  const file = join(tmp, 'ok.json');
  writeFileSync(
    file,
    JSON.stringify({
      directory: {
        kind: 'openldap',
        urls: ['ldap://a.example.test'],
        bindDn: 'cn=svc,dc=example,dc=test',
        bindPasswordFile: '/etc/gatehouse/svc.pw',
        baseDns: ['ou=people,dc=example,dc=test'],
      },
    }),
  );
  const env = {
    GATEHOUSE_AGENT_DIRECTORY__URLS: 'ldap://b.example.test;ldaps://c.example.test:636',
    GATEHOUSE_AGENT_DIRECTORY__POOL_SIZE: '8',
    GATEHOUSE_AGENT_SYNC__PAGE_SIZE: '2',
    GATEHOUSE_AGENT_DIRECTORY__BASE_DNS: '["ou=a,dc=example,dc=test","ou=b,dc=example,dc=test"]',
    UNRELATED: 'x',
  };
  assert.deepEqual(configFromEnv({ GATEHOUSE_AGENT_DIRECTORY__BIND_DN: 'x' }), {
    directory: { bindDn: 'x' },
  });
  const c = loadAgentConfig({ configFile: file, env, overrides: { stateDir: tmp } });
  assert.deepEqual(c.directory.urls, ['ldap://b.example.test', 'ldaps://c.example.test:636']);
  assert.deepEqual(c.directory.baseDns, ['ou=a,dc=example,dc=test', 'ou=b,dc=example,dc=test']);
  assert.equal(c.directory.poolSize, 8);
  assert.equal(c.directory.bindDn, 'cn=svc,dc=example,dc=test');
  assert.equal(c.directory.upnAttribute, 'mail');
  assert.match(c.directory.userFilter ?? '', /inetOrgPerson/);
  assert.equal(c.sync.pageSize, 2);
  assert.equal(c.sync.intervalMinutes, 60);
  assert.equal(c.sync.deltaIntervalMinutes, 2);
  assert.equal(c.stateDir, tmp);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.directory) && Object.isFrozen(c.directory.urls));
  assert.throws(() => {
    (c.directory as { poolSize: number }).poolSize = 1;
  }, TypeError);
});

test('STATE_DIR/config.json is read by default; StartTLS with ldaps:// is refused', () => {
  const dir = join(tmp, 'state');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      directory: {
        kind: 'ad',
        urls: ['ldaps://dc1.corp.example.test'],
        startTls: true,
        bindDn: 'svc@corp.example.test',
        bindPasswordFile: 'pw',
        baseDns: ['DC=corp,DC=example,DC=test'],
      },
    }),
  );
  const [i] = issues(() => loadAgentConfig({ env: { GATEHOUSE_AGENT_STATE_DIR: dir } }));
  assert.equal(i.path, 'directory.startTls');
});
