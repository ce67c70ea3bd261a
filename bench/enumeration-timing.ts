/**
 * Does the answer time tell a wrong password from an unknown user, or from a locked account?
 *
 *   npx node bench/enumeration-timing.ts [ROUNDS=300] [--cloud-only]   (needs root for Samba, and slapd)
 *
 * Through the cloud (first part): a real cloud, agent and Samba AD DC, every lockout setting at
 * its default, password grants and sign-in page submissions (the password step's answer alone) in
 * random order for: a name nobody has (a fresh one each time),
 * an existing user with a wrong password, a user locked in the cloud, the same unknown name once
 * locked, and a user disabled in AD (wrong password). Prints median and p90 of each, and the
 * largest gap between medians.
 *
 * Against a real Samba AD DC and a real OpenLDAP with ppolicy, through Directory.validate(),
 * interleaving "existing user, wrong password" and "no such user" binds in random order. A right
 * password every few rounds keeps the bench user below the directory's lockout threshold (those
 * binds are not measured). Prints medians and p90 of the bind alone (what the directory does) and
 * of the whole validate() at the agent, with the failed-bind timing floor off and on.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig } from '../apps/agent/src/config.ts';
import { Directory, type UserRef } from '../apps/agent/src/directory/index.ts';
import { adUsers, BASE_DN, NETBIOS, REALM, startSambaDc, USER_PASSWORD } from '../test/harness/samba.ts';
import { startSlapd } from '../test/harness/slapd.ts';
import { adDirectory, startStack } from '../test/harness/stack.ts';

const ROUNDS = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 300);
const CLOUD_ONLY = process.argv.includes('--cloud-only');
const tmp = mkdtempSync(join(tmpdir(), 'gh-bench-enum-'));

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const f = (n: number) => n.toFixed(2).padStart(7);

interface Target {
  name: string;
  directory: Record<string, unknown>;
  wrong: UserRef;
  unknown: (i: number) => UserRef;
  /** Right-password binds between wrong ones, to stay below the lockout threshold. */
  resetEvery: number;
}

const measure = async (t: Target, capMs: number) => {
  const cfg = loadAgentConfig({
    env: {},
    overrides: { stateDir: tmp, directory: { ...t.directory, poolSize: 1, failureTimingCapMs: capMs } },
  }).directory;
  const d = new Directory(cfg, { backgroundProbe: false });
  const samples = {
    wrong: { bind: [] as number[], agent: [] as number[] },
    unknown: { bind: [], agent: [] },
  } as Record<'wrong' | 'unknown', { bind: number[]; agent: number[] }>;
  for (let i = 0; i < 30; i++) await d.validate(t.wrong, USER_PASSWORD); // warm-up: connection, caches, floor
  let wrongs = 0;
  for (let i = 0; i < ROUNDS; i++) {
    for (const kind of Math.random() < 0.5
      ? (['wrong', 'unknown'] as const)
      : (['unknown', 'wrong'] as const)) {
      const t0 = performance.now();
      const r = await d.validate(kind === 'wrong' ? t.wrong : t.unknown(i), `Wrong-${i}-pw`);
      const agent = performance.now() - t0;
      if (r.outcome !== 'invalid_credentials')
        throw new Error(`${t.name} ${kind}: ${r.outcome} ${r.directoryCode}`);
      samples[kind].bind.push(r.bindMs ?? Number.NaN);
      samples[kind].agent.push(agent);
      if (kind === 'wrong' && ++wrongs % t.resetEvery === 0) {
        const ok = await d.validate(t.wrong, USER_PASSWORD);
        if (ok.outcome !== 'success') throw new Error(`${t.name}: reset bind gave ${ok.outcome}`);
      }
    }
  }
  await d.close();
  return samples;
};

const report = (name: string, capMs: number, s: Awaited<ReturnType<typeof measure>>) => {
  for (const what of ['bind', 'agent'] as const) {
    const w = s.wrong[what];
    const u = s.unknown[what];
    console.log(
      `${name.padEnd(8)} floor ${capMs ? 'on ' : 'off'} ${what.padEnd(5)}  wrong p50 ${f(q(w, 0.5))} p90 ${f(q(w, 0.9))}` +
        `   unknown p50 ${f(q(u, 0.5))} p90 ${f(q(u, 0.9))}   diff p50 ${f(q(w, 0.5) - q(u, 0.5))} ms`,
    );
  }
};

type Kind = 'unknown' | 'wrong' | 'locked' | 'unknown_locked' | 'disabled';

type Via = 'grant' | 'page';

/** The cloud's answers, by kind, through the password grant and the page (what an attacker measures). */
const measureCloud = async (dc: Awaited<ReturnType<typeof startSambaDc>>) => {
  const stack = await startStack({
    domain: REALM,
    directory: adDirectory({ ...dc, baseDn: BASE_DN, netbios: NETBIOS }),
    expectUsers: [adUsers.bench, adUsers.spray, adUsers.disabled].map((u) => dc.upn(u)),
  });
  try {
    const ip = { ip: '203.0.113.20' };
    const grant = (user: string, pw: string) => stack.passwordGrant(user, pw, ip);
    // The page's timing is the password step's answer alone, not the redirects before it.
    const attempt = async (via: Via, user: string, pw: string) => {
      if (via === 'page') {
        const r = await stack.signInPage(user, pw, ip);
        return { code: r.code, ms: r.ms };
      }
      const t0 = performance.now();
      const r = await grant(user, pw);
      return { code: r.code, ms: performance.now() - t0 };
    };
    const lockedName = `nobody-locked@${REALM}`;
    // Lock a real user and an unknown name in the cloud (defaults against AD's 5: 4 failures).
    for (let i = 0; i < 6; i++) {
      await grant(dc.upn(adUsers.spray), `Lock-${i}!`);
      await grant(lockedName, `Lock-${i}!`);
    }
    const expect: Record<Kind, string> = {
      unknown: 'invalid_credentials',
      wrong: 'invalid_credentials',
      locked: 'locked_out',
      unknown_locked: 'locked_out',
      disabled: 'invalid_credentials',
    };
    const vias: Via[] = ['grant', 'page'];
    const samples = Object.fromEntries(
      vias.map((v) => [v, Object.fromEntries(Object.keys(expect).map((k) => [k, [] as number[]]))]),
    ) as Record<Via, Record<Kind, number[]>>;
    let disabled = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const tries = (Object.keys(expect) as Kind[])
        .flatMap((kind) => vias.map((via) => ({ kind, via })))
        .sort(() => Math.random() - 0.5);
      for (const { kind, via } of tries) {
        const user = {
          unknown: `nobody-${i}-${Math.random().toString(36).slice(2)}@${REALM}`,
          wrong: dc.upn(adUsers.bench),
          locked: dc.upn(adUsers.spray),
          unknown_locked: lockedName,
          disabled: dc.upn(adUsers.disabled),
        }[kind];
        const r = await attempt(via, user, `Wrong-${i}-${kind}!`);
        if (r.code !== expect[kind]) throw new Error(`cloud ${via} ${kind}: ${r.code}`);
        samples[via][kind].push(r.ms);
        // Stay below the cloud's threshold with a right password through the same way in after
        // each wrong one (not measured): the page and the grant may count in different location
        // classes, each with half of the directory's budget.
        if (kind === 'wrong') {
          const ok = await attempt(via, user, USER_PASSWORD);
          if (ok.code !== 'success') throw new Error(`cloud ${via} reset gave ${ok.code}`);
        }
        // The disabled user never succeeds: unlock it in AD (lockoutTime 0 resets badPwdCount) and
        // in the cloud, out of band.
        if (kind === 'disabled' && ++disabled % 2 === 0) {
          await dc.ldapModify(
            `dn: ${dc.dn(adUsers.disabled)}\nchangetype: modify\nreplace: lockoutTime\nlockoutTime: 0\n`,
          );
          const { createSmartLockout } = await import('../apps/cloud/src/lockout/smart-lockout.ts');
          const u = await stack.cloud.ctx.db
            .selectFrom('users')
            .select('id')
            .where('upn', '=', user.toLowerCase())
            .executeTakeFirstOrThrow();
          await createSmartLockout(stack.cloud.ctx.db, stack.cloud.ctx.secrets, Date.now).unlock(
            stack.tenantId,
            u.id,
          );
        }
      }
    }
    for (const via of vias) {
      console.log(`cloud, ${via}, ${ROUNDS} rounds per kind, default lockout settings, times in ms`);
      const medians: number[] = [];
      for (const kind of Object.keys(expect) as Kind[]) {
        const xs = samples[via][kind];
        medians.push(q(xs, 0.5));
        console.log(
          `  ${kind.padEnd(15)} ${expect[kind].padEnd(20)} p50 ${f(q(xs, 0.5))} p90 ${f(q(xs, 0.9))}`,
        );
      }
      console.log(`  largest gap between medians ${f(Math.max(...medians) - Math.min(...medians))} ms`);
    }
  } finally {
    await stack.stop();
  }
};

const dc = await startSambaDc();
if (CLOUD_ONLY) {
  try {
    await measureCloud(dc);
  } finally {
    await dc.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  process.exit(0);
}
await measureCloud(dc);
const slapd = await startSlapd({
  users: [{ uid: 'bench', password: USER_PASSWORD, mail: 'bench@example.test' }],
});
try {
  writeFileSync(join(tmp, 'ad.pw'), dc.adminPassword);
  writeFileSync(join(tmp, 'ldap.pw'), slapd.servicePassword);
  const targets: Target[] = [
    {
      name: 'samba',
      directory: {
        kind: 'ad',
        urls: [dc.url],
        bindDn: dc.adminUpn,
        bindPasswordFile: join(tmp, 'ad.pw'),
        baseDns: [BASE_DN],
      },
      wrong: { dn: '', upn: dc.upn(adUsers.bench) },
      unknown: (i) => ({ dn: '', upn: dc.upn(`nobody${i}`) }),
      resetEvery: 3, // domain threshold 5
    },
    {
      name: 'openldap',
      directory: {
        kind: 'openldap',
        urls: [slapd.url],
        bindDn: slapd.serviceDn,
        bindPasswordFile: join(tmp, 'ldap.pw'),
        baseDns: [slapd.peopleDn],
      },
      wrong: { dn: `uid=bench,${slapd.peopleDn}`, upn: 'bench@example.test' },
      unknown: (i) => ({ dn: `uid=nobody${i},${slapd.peopleDn}`, upn: 'x@example.test' }),
      resetEvery: 2, // default ppolicy pwdMaxFailure 3
    },
  ];
  console.log(`${ROUNDS} rounds per line, one connection, times in ms`);
  for (const t of targets) {
    for (const cap of [0, 300]) report(t.name, cap, await measure(t, cap));
  }
} finally {
  await dc.stop();
  await slapd.stop();
  rmSync(tmp, { recursive: true, force: true });
}
