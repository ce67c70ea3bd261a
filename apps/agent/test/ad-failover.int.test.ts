/**
 * Several domain controllers: a dead one costs at most one connect timeout, then is skipped until
 * the background probe sees it again; a real Samba DC stopped and started mid-run.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { adUsers, type SambaDc, startSambaDc, USER_PASSWORD } from '../../../test/harness/samba.ts';
import { Directory } from '../src/directory/index.ts';
import { type AdFixture, adFixture } from './helpers/ad.ts';

/** Nothing listens here: connection refused at once. */
const REFUSED = 'ldap://127.0.0.3:389';
let dc: SambaDc;
let fx: AdFixture;
let blackhole: ChildProcess;
let blackholeUrl: string;
const fillers: net.Socket[] = [];
const alice = () => ({ dn: '', upn: dc.upn(adUsers.ok) });

before(async () => {
  dc = await startSambaDc();
  fx = adFixture(dc);
  // A DC that drops connection attempts: a listener with a full accept queue never answers a SYN.
  blackhole = spawn(
    'python3',
    [
      '-c',
      'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(3600)',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((r) =>
    blackhole.stdout?.once('data', (d) => r(Number(String(d).trim()))),
  );
  blackholeUrl = `ldap://127.0.0.1:${port}`;
  for (let i = 0; i < 3; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => {}));
  await new Promise((r) => setTimeout(r, 200));
});

after(async () => {
  for (const s of fillers) s.destroy();
  blackhole?.kill();
  await dc?.stop();
  fx?.cleanup();
});

test('a refused DC first in the list: one attempt, marked down, then skipped', async () => {
  const d = new Directory(fx.cfg({ urls: [REFUSED, dc.url] }), { backgroundProbe: false });
  try {
    const r = await d.validate(alice(), USER_PASSWORD);
    assert.deepEqual([r.outcome, r.server], ['success', dc.url]);
    assert.equal(d.servers.servers[0].up, false);
    assert.equal(d.servers.servers[0].lastError, 'net:ECONNREFUSED');
    assert.deepEqual(
      d.servers.order().map((s) => s.url),
      [dc.url, REFUSED],
    );
    assert.equal((await d.validate(alice(), 'wrong')).directoryCode, '49/52e');
    assert.deepEqual(await d.probe(), {
      ok: true,
      server: dc.url,
      lockoutPolicy: { threshold: 5, durationS: 1800 },
    });
  } finally {
    await d.close();
  }
});

test('a DC that drops packets costs one connect timeout, then is skipped', async () => {
  const d = new Directory(fx.cfg({ urls: [blackholeUrl, dc.url], connectTimeoutMs: 600 }), {
    backgroundProbe: false,
  });
  try {
    let t0 = performance.now();
    const r = await d.validate(alice(), USER_PASSWORD);
    const first = performance.now() - t0;
    assert.deepEqual([r.outcome, r.server], ['success', dc.url]);
    assert.ok(first >= 550 && first < 1500, `first bind took ${first} ms`);
    assert.equal(d.servers.servers[0].lastError, 'net:connect-timeout');
    t0 = performance.now();
    for (let i = 0; i < 5; i++) assert.equal((await d.validate(alice(), USER_PASSWORD)).outcome, 'success');
    // Service searches skip it too.
    assert.equal((await d.probe()).ok, true);
    const next = performance.now() - t0;
    assert.ok(next < 500, `5 binds and a probe after marking took ${next} ms`);
    // Alone, it is directory_unreachable (not a timeout of the operation) within the connect timeout.
    const alone = new Directory(fx.cfg({ urls: [blackholeUrl], connectTimeoutMs: 300 }), {
      backgroundProbe: false,
    });
    t0 = performance.now();
    const u = await alone.validate(alice(), USER_PASSWORD);
    assert.deepEqual([u.outcome, u.directoryCode], ['directory_unreachable', 'net:connect-timeout']);
    assert.ok(performance.now() - t0 < 1000);
    await alone.close();
  } finally {
    await d.close();
  }
});

for (const transport of ['ldap', 'starttls'] as const) {
  test(`${transport}: Samba stopped mid-run is unreachable at once, and used again after it starts`, async () => {
    const d = new Directory(
      fx.cfg({ ...fx.transports[transport], urls: [dc.url, REFUSED], probeIntervalMs: 200 }),
    );
    try {
      // Pooled user and service connections exist when the DC goes away.
      assert.equal((await d.validate(alice(), USER_PASSWORD)).outcome, 'success');
      assert.equal((await d.probe()).ok, true);
      await dc.stop();
      const t0 = performance.now();
      const down = await d.validate(alice(), USER_PASSWORD);
      assert.equal(down.outcome, 'directory_unreachable');
      assert.match(down.directoryCode, /^net:/);
      assert.ok(performance.now() - t0 < 500, 'a stopped DC answers "refused" at once');
      const h = await d.probe();
      assert.equal(h.ok, false);
      assert.match(h.error ?? '', /directory_unreachable/);
      assert.deepEqual(h.lockoutPolicy, { threshold: 5, durationS: 1800 }, 'the last known policy is kept');
      assert.ok(d.servers.servers.every((s) => !s.up));

      await dc.start();
      for (let i = 0; i < 100 && !d.servers.servers[0].up; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(d.servers.servers[0].up, true, 'the background probe saw the DC back');
      const back = await d.validate(alice(), USER_PASSWORD);
      assert.deepEqual([back.outcome, back.server], ['success', dc.url]);
      assert.equal((await d.validate(alice(), 'wrong')).directoryCode, '49/52e');
      assert.equal((await d.probe()).ok, true);
    } finally {
      await d.close();
    }
  });
}
