/**
 * A private OpenLDAP slapd for tests and the demo: temp dir, mdb database, the ppolicy overlay
 * (module, OpenLDAP 2.5), a free loopback port. Seeded over LDAP (not slapadd) so ppolicy
 * hashes the passwords and stamps pwdChangedTime, as it would for a real directory; only
 * benchmarks load a large directory offline (`bulkLdif`), where adding 100,000 entries over LDAP
 * would take longer than the run measured.
 * Started unattended from a generated slapd.d configuration (see below).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './children.ts';

export interface SeedUser {
  uid: string;
  password: string;
  mail?: string;
  cn?: string;
}

export interface SlapdOptions {
  users?: SeedUser[];
  /** Also seed one user per ppolicy state (see `SlapdInstance.states`), all with `statePassword`. */
  ppolicyStates?: boolean;
  statePassword?: string;
  suffix?: string;
  /** Size limit for everyone but the rootdn on unpaged searches (paged ones stay unlimited). */
  sizeLimit?: number;
  /**
   * An LDIF file of entries under the suffix, loaded with slapadd (offline, before slapd starts)
   * after the base entries: passwords in it stay as written and ppolicy stamps nothing.
   */
  bulkLdif?: string;
  /** The mdb map size (default 100 MiB; 100,000 users with their groups need more). */
  maxSizeMb?: number;
}

export interface SlapdInstance {
  url: string;
  baseDn: string;
  peopleDn: string;
  /** The rootdn (not subject to ACLs or ppolicy). */
  adminDn: string;
  adminPassword: string;
  /** A non-root service account that may search and read ppolicy attributes. */
  serviceDn: string;
  servicePassword: string;
  port: number;
  dir: string;
  /** DNs of the ppolicy state users (only with `ppolicyStates`). */
  states: {
    locked: string;
    mustChange: string;
    accountExpired: string;
    notYetValid: string;
    passwordExpired: string;
  };
  /** Runs LDIF through ldapmodify as the rootdn; records without changetype are adds. */
  ldapModify(ldif: string): Promise<void>;
  stop(): Promise<void>;
}

const findExecutable = (name: string): string | null => {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    try {
      accessSync(join(d, name), constants.X_OK);
      return join(d, name);
    } catch {}
  }
  return null;
};

const run = (cmd: string, args: string[], input?: string): Promise<{ code: number; out: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, out }));
    // A tool that exits before reading its input (ldapsearch ignores stdin) must not crash us.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const slapdConf = (
  dir: string,
  suffix: string,
  adminDn: string,
  adminPassword: string,
  sizeLimit?: number,
  maxSizeMb = 100,
) => `
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile ${dir}/slapd.pid
argsfile ${dir}/slapd.args

database mdb
suffix "${suffix}"
rootdn "${adminDn}"
rootpw ${adminPassword}
directory ${dir}/data
maxsize ${maxSizeMb * 1024 * 1024}
index objectClass eq
index uid eq
index mail eq
${
  sizeLimit
    ? `limits * size.soft=${sizeLimit} size.hard=${sizeLimit} size.pr=unlimited size.prtotal=unlimited`
    : 'sizelimit size.soft=unlimited size.hard=unlimited size.prtotal=unlimited'
}

overlay ppolicy
ppolicy_default "cn=default,ou=policies,${suffix}"
ppolicy_use_lockout
ppolicy_hash_cleartext

access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
`;

const userLdif = (peopleDn: string, u: SeedUser, extra = '') =>
  [
    `dn: uid=${u.uid},${peopleDn}`,
    'objectClass: inetOrgPerson',
    `uid: ${u.uid}`,
    `cn: ${u.cn ?? u.uid}`,
    'sn: Test',
    ...(u.mail ? [`mail: ${u.mail}`] : []),
    `userPassword: ${u.password}`,
    ...(extra ? [extra] : []),
    '',
    '',
  ].join('\n');

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export const startSlapd = async (opts: SlapdOptions = {}): Promise<SlapdInstance> => {
  const slapd = findExecutable('slapd');
  const ldapmodify = findExecutable('ldapmodify');
  const ldapsearch = findExecutable('ldapsearch');
  if (!slapd || !ldapmodify || !ldapsearch) {
    throw new Error(
      'OpenLDAP is not installed: slapd, ldapmodify and ldapsearch are needed ' +
        '(Debian: preseed "slapd slapd/no_configuration boolean true", then apt-get install slapd ldap-utils)',
    );
  }
  const suffix = opts.suffix ?? 'dc=example,dc=test';
  const dc = /^dc=([^,]+)/.exec(suffix)?.[1] ?? 'example';
  const peopleDn = `ou=people,${suffix}`;
  const adminDn = `cn=admin,${suffix}`;
  const adminPassword = `admin-${Math.random().toString(36).slice(2)}`;
  const serviceDn = `cn=gatehouse-agent,ou=services,${suffix}`;
  const servicePassword = `svc-${Math.random().toString(36).slice(2)}`;
  const statePassword = opts.statePassword ?? 'Passw0rd!123';
  const dir = mkdtempSync(join(tmpdir(), 'gh-slapd-'));
  mkdirSync(join(dir, 'data'));
  const confFile = join(dir, 'slapd.conf');
  writeFileSync(confFile, slapdConf(dir, suffix, adminDn, adminPassword, opts.sizeLimit, opts.maxSizeMb), {
    mode: 0o600,
  });
  const test = await run(join(slapd, '..', 'slaptest'), ['-Q', '-u', '-f', confFile]);
  if (test.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`slaptest rejected the generated slapd.conf: ${test.out}`);
  }

  let seed = `dn: ${suffix}
objectClass: dcObject
objectClass: organization
dc: ${dc}
o: ${dc}

dn: ${peopleDn}
objectClass: organizationalUnit
ou: people

dn: ou=services,${suffix}
objectClass: organizationalUnit
ou: services

dn: ou=policies,${suffix}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,${suffix}
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 3
pwdLockoutDuration: 0
pwdFailureCountInterval: 0
pwdMustChange: TRUE
pwdAllowUserChange: TRUE
pwdMaxAge: 0

dn: cn=shortexpiry,ou=policies,${suffix}
objectClass: organizationalRole
objectClass: pwdPolicy
cn: shortexpiry
pwdAttribute: userPassword
pwdMaxAge: 1
pwdGraceAuthNLimit: 0
pwdExpireWarning: 0

dn: ${serviceDn}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: gatehouse-agent
userPassword: ${servicePassword}

`;
  for (const u of opts.users ?? []) seed += userLdif(peopleDn, u);
  if (opts.bulkLdif) {
    const slapadd = join(slapd, '..', 'slapadd');
    writeFileSync(join(dir, 'seed.ldif'), seed, { mode: 0o600 });
    for (const file of [join(dir, 'seed.ldif'), opts.bulkLdif]) {
      const r = await run(slapadd, ['-q', '-f', confFile, '-l', file]);
      if (r.code !== 0) {
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`slapadd ${file} failed (${r.code}): ${r.out.slice(-2000)}`);
      }
    }
  }

  // The free port can be taken between probing and binding; retry a few times.
  let child: ChildProcess | undefined;
  let port = 0;
  let url = '';
  let lastOut = '';
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    url = `ldap://127.0.0.1:${port}`;
    const c = spawn(slapd, ['-d', '0', '-h', `${url}/`, '-f', confFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(c);
    let out = '';
    c.stdout?.on('data', (d) => {
      out += d;
    });
    c.stderr?.on('data', (d) => {
      out += d;
    });
    let exited = false;
    c.once('exit', () => {
      exited = true;
      live.delete(c);
    });
    for (let i = 0; i < 200 && !exited; i++) {
      const probe = await run(ldapsearch, ['-x', '-H', url, '-b', '', '-s', 'base', '1.1']);
      if (probe.code === 0) {
        child = c;
        break;
      }
      await sleep(25);
    }
    if (!child) {
      lastOut = out;
      c.kill('SIGKILL');
    }
  }
  if (!child) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`slapd did not start: ${lastOut.slice(-2000)}`);
  }
  const proc = child;

  const ldapModify = async (ldif: string): Promise<void> => {
    const r = await run(ldapmodify, ['-a', '-x', '-H', url, '-D', adminDn, '-w', adminPassword], ldif);
    if (r.code !== 0) throw new Error(`ldapmodify failed (${r.code}): ${r.out}`);
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGINT');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    live.delete(proc);
    rmSync(dir, { recursive: true, force: true });
  };

  const states = {
    locked: `uid=st-locked,${peopleDn}`,
    mustChange: `uid=st-mustchange,${peopleDn}`,
    accountExpired: `uid=st-acctexpired,${peopleDn}`,
    notYetValid: `uid=st-notyet,${peopleDn}`,
    passwordExpired: `uid=st-pwexpired,${peopleDn}`,
  };
  try {
    if (!opts.bulkLdif) await ldapModify(seed);
    if (opts.ppolicyStates) {
      const su = (dn: string, extra = '') =>
        userLdif(peopleDn, { uid: /^uid=([^,]+)/.exec(dn)![1], password: statePassword }, extra);
      await ldapModify(
        su(states.locked) +
          su(states.mustChange) +
          su(states.accountExpired) +
          su(states.notYetValid) +
          su(states.passwordExpired, `pwdPolicySubentry: cn=shortexpiry,ou=policies,${suffix}`) +
          `dn: ${states.locked}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n\n` +
          `dn: ${states.mustChange}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n\n` +
          `dn: ${states.accountExpired}\nchangetype: modify\nreplace: pwdEndTime\npwdEndTime: 20200101000000Z\n\n` +
          `dn: ${states.notYetValid}\nchangetype: modify\nreplace: pwdStartTime\npwdStartTime: 20990101000000Z\n\n`,
      );
      // pwdMaxAge is 1 s for the password-expired user: let it run out.
      await sleep(1500);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url,
    port,
    dir,
    baseDn: suffix,
    peopleDn,
    adminDn,
    adminPassword,
    serviceDn,
    servicePassword,
    states,
    ldapModify,
    stop,
  };
};
