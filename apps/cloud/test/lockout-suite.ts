/**
 * The smart lockout rules as one suite, run on SQLite by lockout.test.ts and on PostgreSQL by
 * lockout.int.test.ts (a service, so the integration step).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import type { Db } from '../src/db/index.ts';
import { createSmartLockout, lockDurationMs } from '../src/lockout/smart-lockout.ts';
import { createSecretBox } from '../src/secrets.ts';

const settings = { threshold: 3, durationS: 60 };
const secrets = createSecretBox(randomBytes(32));

export const suite = (name: string, open: () => Promise<{ db: Db; close: () => Promise<void> } | null>) =>
  describe(`smart lockout (${name})`, async () => {
    const opened = await open();
    if (!opened) {
      test('database unavailable outside CI', { skip: true }, () => {});
      return;
    }
    const { db, close } = opened;
    let clock = 1_000_000;
    const lockout = createSmartLockout(db, secrets, () => clock, { maxUnknownNames: 5 });
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

    test('attempts counted in flight by a process that is gone free their slots at once', async () => {
      const asked: string[] = [];
      const isGone = async (incarnation: string) => {
        asked.push(incarnation);
        return incarnation === 'crashed';
      };
      const crashed = createSmartLockout(db, secrets, () => clock, { self: 'crashed' });
      const running = createSmartLockout(db, secrets, () => clock, { self: 'running' });
      const here = createSmartLockout(db, secrets, () => clock, { self: 'here', isGone });
      const fill = async (by: typeof crashed, user: string, n: number) => {
        for (let i = 0; i < n; i++)
          assert.equal((await by.admit('t1', user, `lost${i}`, {}, settings, deadline())).kind, 'admit');
      };
      await fill(crashed, 'u11', settings.threshold);
      const a = await here.admit('t1', 'u11', 'right', {}, settings, clock + 5_000);
      assert.equal(a.kind, 'admit', "the crashed process's attempts are not in flight any more");
      assert.deepEqual(asked, ['crashed']);
      if (a.kind === 'admit') await here.settle(a.reservation, 'success', settings);
      // A process that runs still holds its slots until it settles them.
      await fill(running, 'u12', settings.threshold);
      assert.equal((await here.admit('t1', 'u12', 'right', {}, settings, clock + 30)).kind, 'locked');
      // Slots held by two processes, one of them gone: nobody can tell whose are whose, so they hold.
      await fill(crashed, 'u13', 1);
      await fill(running, 'u13', settings.threshold - 1);
      assert.equal((await here.admit('t1', 'u13', 'right', {}, settings, clock + 30)).kind, 'locked');
    });

    test('both locations together never send the directory more wrong passwords than it takes', async () => {
      // AD locks at 5 and forgets after 30 min: at most 4 wrong binds, every location together.
      const ad = { ...settings, directoryBudget: 4, directoryWindowS: 1800 };
      const go = async (password: string, origin: { ip: string }, right = false) => {
        const a = await lockout.admit('t1', 'u8', password, origin, ad, deadline());
        if (a.kind !== 'admit') return a.kind;
        await lockout.settle(a.reservation, right ? 'success' : 'invalid_credentials', ad);
        return right ? 'success' : 'failed';
      };
      const home = { ip: '192.0.2.10' };
      const away = { ip: '203.0.113.8' };
      assert.equal(await go('right', home, true), 'success');
      const sprayed = [];
      for (let i = 0; i < 6; i++) sprayed.push(await go(`s${i}`, away));
      assert.deepEqual(sprayed, ['failed', 'failed', 'failed', 'locked', 'locked', 'locked']);
      assert.equal(await go('typo', home), 'failed', 'the 4th wrong password, from home');
      assert.equal(await go('right', home, true), 'locked', 'a 5th could lock AD: refused, even from home');
      clock += 1_800_001;
      assert.equal(await go('right', home, true), 'success', 'once AD has forgotten them');
    });

    test('a counter untouched for a day lapses, for every name alike', async () => {
      for (let i = 0; i < 2; i++) assert.equal((await attempt('u9', `old${i}`, {})).kind, 'failed');
      clock += 86_400_001;
      for (let i = 0; i < 2; i++) assert.equal((await attempt('u9', `new${i}`, {})).kind, 'failed');
      assert.equal((await lockout.status('t1', 'u9'))[0]!.failures, 2, 'the old failures were forgotten');
    });

    test('names nobody has: stored as keyed hashes, swept when lapsed, capped per tenant', async () => {
      const subject = lockout.unknownSubject('t2', 'ghost@example.com');
      assert.equal(subject, lockout.unknownSubject('t2', 'ghost@example.com'));
      assert.notEqual(subject, lockout.unknownSubject('t3', 'ghost@example.com'));
      assert.ok(subject.startsWith('~') && !subject.includes('ghost'));
      const fail = async (tenant: string, login: string) => {
        const a = await lockout.admit(
          tenant,
          lockout.unknownSubject(tenant, login),
          'pw',
          {},
          settings,
          deadline(),
        );
        assert.equal(a.kind, 'admit');
        if (a.kind === 'admit') await lockout.settle(a.reservation, 'invalid_credentials', settings);
        clock += 1000;
      };
      const rows = async (tenant: string) =>
        (
          await db
            .selectFrom('lockout_counters')
            .select('user_id')
            .where('tenant_id', '=', tenant)
            .orderBy('updated_at')
            .execute()
        ).map((r) => r.user_id);
      const hashes = async (tenant: string) =>
        (
          await db
            .selectFrom('lockout_bad_passwords')
            .select('user_id')
            .where('tenant_id', '=', tenant)
            .execute()
        ).length;
      for (let i = 0; i < 8; i++) await fail('t2', `random${i}@example.com`);
      await attempt('known-user', 'bad', {}); // a user's counter is never swept
      assert.equal((await rows('t2')).length, 8);
      await lockout.prune();
      const kept = await rows('t2');
      assert.deepEqual(
        kept,
        [3, 4, 5, 6, 7].map((i) => lockout.unknownSubject('t2', `random${i}@example.com`)),
        'the 5 most recent stay',
      );
      assert.equal(await hashes('t2'), 5, "evicted names' wrong-password hashes go with them");
      clock += 86_400_001;
      await lockout.prune();
      assert.deepEqual(await rows('t2'), [], 'lapsed and expired: nothing left');
      assert.equal(await hashes('t2'), 0);
      assert.ok((await lockout.status('t1', 'known-user')).length > 0);
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
