import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { type Db, openDb } from '../src/db/index.ts';
import { createSmartLockout, lockDurationMs, networkOf } from '../src/lockout/smart-lockout.ts';
import { createSecretBox } from '../src/secrets.ts';

const settings = { threshold: 3, durationS: 60 };
const secrets = createSecretBox(randomBytes(32));

const suite = (name: string, open: () => Promise<{ db: Db; close: () => Promise<void> } | null>) =>
  describe(`smart lockout (${name})`, async () => {
    const opened = await open();
    if (!opened) {
      test('database unavailable outside CI', { skip: true }, () => {});
      return;
    }
    const { db, close } = opened;
    let clock = 1_000_000;
    const lockout = createSmartLockout(db, secrets, () => clock);
    after(close);
    const deadline = () => clock + 10_000;

    // Plays the directory: every admitted wrong password is one bind.
    const attempt = async (
      user: string,
      password: string,
      origin: { ip?: string; deviceId?: string },
      right = false,
    ) => {
      const a = await lockout.admit('t1', user, password, origin, settings, deadline());
      if (a.kind !== 'admit') return { kind: a.kind, bound: false };
      const s = await lockout.settle(a.reservation, right ? 'success' : 'invalid_credentials', settings);
      return { kind: s.locked ? 'locked-now' : right ? 'success' : 'failed', bound: true };
    };

    test('locks at the threshold and escalates on each further failure', async () => {
      const ip = { ip: '203.0.113.7' };
      for (let i = 0; i < 2; i++) assert.equal((await attempt('u1', `bad${i}`, ip)).kind, 'failed');
      assert.equal((await attempt('u1', 'bad2', ip)).kind, 'locked-now');
      assert.equal((await attempt('u1', 'bad3', ip)).kind, 'locked');
      clock += 60_001;
      assert.equal((await attempt('u1', 'bad4', ip)).kind, 'locked-now', 'a failure after the lock re-locks');
      const [s] = await lockout.status('t1', 'u1');
      assert.equal(s!.lockedUntil - clock, 120_000, 'second lock lasts twice as long');
      assert.equal(lockDurationMs(settings, 20), 60_000 * 64, 'escalation is capped');
    });

    test('the same wrong password repeated does not count again and costs no bind', async () => {
      let binds = 0;
      for (let i = 0; i < 20; i++)
        if ((await attempt('u2', 'same-wrong', { ip: '198.51.100.1' })).bound) binds++;
      assert.equal(binds, 1);
      assert.equal((await lockout.status('t1', 'u2'))[0]!.failures, 1);
      assert.equal((await attempt('u2', 'right', { ip: '198.51.100.1' }, true)).kind, 'success');
    });

    test('an attacker elsewhere cannot lock the user out of a familiar location', async () => {
      const home = { ip: '192.0.2.10', deviceId: 'dev-home' };
      assert.equal((await attempt('u3', 'right', home, true)).kind, 'success');
      for (let i = 0; i < 10; i++) await attempt('u3', `spray${i}`, { ip: '203.0.113.99' });
      assert.equal((await attempt('u3', 'spray-x', { ip: '203.0.113.99' })).kind, 'locked');
      assert.equal(
        (await attempt('u3', 'right', { ip: '192.0.2.44' }, true)).kind,
        'success',
        'same /24 is familiar',
      );
      assert.equal(
        (await attempt('u3', 'right', { ip: '10.9.9.9', deviceId: 'dev-home' }, true)).kind,
        'success',
      );
    });

    test('concurrent wrong passwords: exactly threshold binds, the rest refused', async () => {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => attempt('u4', `c${i}`, { ip: '203.0.113.50' })),
      );
      assert.equal(results.filter((r) => r.bound).length, settings.threshold);
      assert.equal((await lockout.status('t1', 'u4'))[0]!.failures, settings.threshold);
      assert.ok((await lockout.status('t1', 'u4'))[0]!.lockedUntil > clock);
    });

    test('concurrent right passwords beyond the threshold wait for a slot instead of being refused', async () => {
      const results = await Promise.all(
        Array.from({ length: 12 }, () => attempt('u6', 'right', { ip: '198.51.100.9' }, true)),
      );
      assert.deepEqual(
        results.map((r) => r.kind),
        Array(12).fill('success'),
      );
    });

    test('attempts counted in flight by a node that died lapse after their deadline', async () => {
      const d = deadline();
      for (let i = 0; i < settings.threshold; i++) {
        assert.equal((await lockout.admit('t1', 'u7', `lost${i}`, {}, settings, d)).kind, 'admit');
      }
      // Nothing settles them (the node died); a new attempt cannot get a slot until they lapse.
      const blocked = await lockout.admit('t1', 'u7', 'right', {}, settings, clock + 30);
      assert.equal(blocked.kind, 'locked');
      clock = d + 5_001;
      assert.equal((await attempt('u7', 'right', {}, true)).kind, 'success');
    });

    test('infrastructure outcomes never count; unlock clears everything', async () => {
      for (let i = 0; i < 20; i++) {
        const a = await lockout.admit('t1', 'u5', `p${i}`, {}, settings, deadline());
        assert.equal(a.kind, 'admit');
        if (a.kind === 'admit') await lockout.settle(a.reservation, 'no_agent', settings);
      }
      assert.ok((await lockout.status('t1', 'u5')).every((s) => s.failures === 0 && s.lockedUntil === 0));
      for (let i = 0; i < 3; i++) await attempt('u5', `bad${i}`, {});
      assert.equal((await attempt('u5', 'x', {})).kind, 'locked');
      await lockout.unlock('t1', 'u5');
      assert.equal((await attempt('u5', 'right', {}, true)).kind, 'success');
    });
  });

const dir = mkdtempSync(join(tmpdir(), 'gh-lockout-'));
suite('sqlite', async () => {
  const { db } = await openDb(`sqlite:${join(dir, 'db.sqlite')}`);
  return {
    db,
    close: async () => {
      await db.destroy();
      // The keyed hashes must not contain the passwords.
      for (const f of readdirSync(dir)) assert.ok(!readFileSync(join(dir, f)).includes('same-wrong'), f);
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
suite('postgres', async () => {
  const temp = await createTempDatabase();
  if (!temp) return null;
  const { db } = await openDb(temp.url);
  return {
    db,
    close: async () => {
      await db.destroy();
      await temp.drop();
    },
  };
});

test('networkOf groups addresses by /24 and /64', () => {
  assert.equal(networkOf('192.0.2.44'), '192.0.2.0/24');
  assert.equal(networkOf('::ffff:192.0.2.44'), '192.0.2.0/24');
  assert.equal(networkOf('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
});
