/**
 * A real Active Directory for tests: Samba AD DC, provisioned once and seeded with users in every
 * account state, saved as a tarball, then restored (0.2 s) and started for each suite.
 *
 * Samba's LDAP ports are fixed in its code (389/636), so it listens on its own loopback address.
 * It needs root (CI runs as root).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const REALM = 'corp.example.test';
export const NETBIOS = 'CORP';
export const BASE_DN = 'DC=corp,DC=example,DC=test';
export const ADMIN_PASSWORD = 'Adm1n!Passw0rd';
export const USER_PASSWORD = 'Passw0rd!123';
/** The domain lockout threshold the snapshot is provisioned with. */
export const AD_LOCKOUT_THRESHOLD = 5;

/** Users seeded in the snapshot, by the state their account is in. */
export const adUsers = {
  ok: 'alice',
  disabled: 'bob',
  mustChange: 'carol',
  passwordExpired: 'dave',
  accountExpired: 'eve',
  lockout: 'frank',
  logonHours: 'grace',
  wrongPassword: 'heidi',
  bench: 'ivan',
  workstation: 'wendy',
  spray: 'sprayee',
  spare: 'judy',
} as const;

// One path for every run: smb.conf holds absolute paths, so the snapshot must come back to the same place.
const ROOT = join(tmpdir(), 'gatehouse-samba');
const DC = join(ROOT, 'dc');
const SNAPSHOT = join(tmpdir(), 'gatehouse-samba-snapshot-v2.tar');

export interface SambaDc {
  ip: string;
  url: string;
  ldapsUrl: string;
  /** Samba's self-signed CA (pin it for LDAPS / StartTLS). */
  caFile: string;
  /** The name in Samba's certificate (it has no SAN). */
  tlsServerName: string;
  adminUpn: string;
  adminPassword: string;
  upn(user: string): string;
  dn(user: string): string;
  tool(...args: string[]): Promise<string>;
  ldapModify(ldif: string): Promise<void>;
  /** Reads one attribute of a user as the administrator (e.g. badPwdCount). */
  attribute(user: string, name: string): Promise<string | undefined>;
  stop(): Promise<void>;
  start(): Promise<void>;
}

const need = (bin: string) => {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) if (existsSync(join(dir, bin))) return;
  throw new Error(
    `${bin} is not installed: run 'npm test' (it installs samba, winbind, krb5-user, faketime)`,
  );
};

/** Instance 1 lives where the snapshot was provisioned; others are copies with their own paths and address. */
const rootOf = (instance: number) => (instance === 1 ? ROOT : `${ROOT}-${instance}`);
const confIn = (root: string) => join(root, 'dc', 'etc', 'smb.conf');
const conf = () => confIn(ROOT);

const waitForLdap = async (ip: string, proc?: ChildProcess) => {
  for (let i = 0; i < 200; i++) {
    if (proc && proc.exitCode !== null) throw new Error(`samba exited with ${proc.exitCode}`);
    try {
      await run('ldapsearch', ['-x', '-H', `ldap://${ip}`, '-b', '', '-s', 'base', '1.1']);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`samba did not answer LDAP on ${ip}`);
};

const startSamba = async (ip: string, smbConf = conf()): Promise<ChildProcess> => {
  const proc = spawn('samba', ['-i', '-s', smbConf, '-d', '1'], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await waitForLdap(ip, proc);
  return proc;
};

const stopSamba = async (proc: ChildProcess) => {
  if (proc.exitCode !== null || proc.pid === undefined) return;
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    process.kill(-proc.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {}
  }, 5000);
  await exited;
  clearTimeout(timer);
  // The root process can exit before its children: any still alive keep writing under dc/ (the
  // first snapshot's tar failed on dc/msg.sock changing under it). The DC is a session leader.
  const sid = String(proc.pid);
  for (let i = 0; i < 100; i++) {
    const left = await run('pgrep', ['-s', sid]).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    if (!left) return;
    await run('pkill', ['-KILL', '-s', sid]).catch(() => {});
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`samba session ${sid} would not exit`);
};

const ldif = (ip: string, text: string) =>
  new Promise<void>((resolve, reject) => {
    const p = spawn(
      'ldapmodify',
      ['-x', '-H', `ldap://${ip}`, '-D', `Administrator@${REALM}`, '-w', ADMIN_PASSWORD],
      {
        stdio: ['pipe', 'ignore', 'pipe'],
      },
    );
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ldapmodify failed: ${err}`))));
    p.stdin.end(text);
  });

/**
 * A DC left over from an interrupted run would hold the ports, and keep answering in place of the
 * new one. Samba renames its processes ("samba: root process"), so it is found by its LDAP socket
 * and stopped with its whole session (each DC is started as a session leader).
 */
const stopLeftover = async (ip: string) => {
  const { stdout } = await run('ss', ['-Hltnp', 'src', `${ip}:389`]).catch(() => ({ stdout: '' }));
  for (const pid of new Set([...stdout.matchAll(/pid=(\d+)/g)].map((m) => m[1]!))) {
    const sid = (await run('ps', ['-o', 'sid=', '-p', pid]).catch(() => ({ stdout: '' }))).stdout.trim();
    if (sid) await run('pkill', ['-KILL', '-s', sid]).catch(() => {});
  }
  for (let i = 0; i < 50; i++) {
    const { stdout: still } = await run('ss', ['-Hltn', 'src', `${ip}:389`]).catch(() => ({ stdout: '' }));
    if (!still.trim()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`something else holds ${ip}:389`);
};

const provision = async (ip: string) => {
  rmSync(ROOT, { recursive: true, force: true });
  mkdirSync(ROOT, { recursive: true });
  const empty = join(ROOT, 'empty.conf');
  writeFileSync(empty, '');
  // -s empty.conf: provision otherwise inherits /etc/samba/smb.conf (shares, passwd program...).
  await run('samba-tool', [
    'domain',
    'provision',
    '-s',
    empty,
    `--targetdir=${DC}`,
    `--realm=${REALM.toUpperCase()}`,
    `--domain=${NETBIOS}`,
    '--server-role=dc',
    '--dns-backend=NONE',
    '--use-rfc2307',
    '--host-name=dc1',
    `--host-ip=${ip}`,
    `--adminpass=${ADMIN_PASSWORD}`,
    '--option=netbios name=DC1',
    `--option=interfaces=${ip}/8`,
    '--option=bind interfaces only=yes',
    `--option=log file=${join(ROOT, 'log.%m')}`,
  ]);
  // Provision drops `ldap server require strong auth`; plain-LDAP simple binds need it off.
  // LDAPS and StartTLS work either way (tests use both).
  const c = readFileSync(conf(), 'utf8').replace(
    /^\tserver services = .*$/m,
    '\tserver services = ldap, cldap, kdc\n\tldap server require strong auth = no',
  );
  writeFileSync(conf(), c);
  const proc = await startSamba(ip);
  try {
    const S = ['-s', conf()];
    const tool = (...a: string[]) => run('samba-tool', [...a, ...S]);
    for (const u of Object.values(adUsers)) {
      if (u === adUsers.passwordExpired) continue;
      await tool(
        'user',
        'create',
        u,
        USER_PASSWORD,
        `--mail-address=${u}.mail@${REALM}`,
        `--given-name=${u}`,
      );
    }
    // 532 needs a password set in the past and a maxPwdAge above one day (Samba ignores shorter ones).
    await run('faketime', [
      '-f',
      '-3d',
      'samba-tool',
      'user',
      'create',
      adUsers.passwordExpired,
      USER_PASSWORD,
      ...S,
    ]);
    await tool(
      'domain',
      'passwordsettings',
      'pso',
      'create',
      'shortpwd',
      '1',
      '--min-pwd-age=0',
      '--max-pwd-age=2',
    );
    await tool('domain', 'passwordsettings', 'pso', 'apply', 'shortpwd', adUsers.passwordExpired);
    await tool('user', 'disable', adUsers.disabled);
    await tool('user', 'setexpiry', adUsers.accountExpired, '--days=0');
    await tool(
      'domain',
      'passwordsettings',
      'set',
      `--account-lockout-threshold=${AD_LOCKOUT_THRESHOLD}`,
      '--account-lockout-duration=30',
      '--reset-account-lockout-after=30',
    );
    await ldif(
      ip,
      [
        `dn: CN=${adUsers.mustChange},CN=Users,${BASE_DN}`,
        'changetype: modify',
        'replace: pwdLastSet',
        'pwdLastSet: 0',
        '',
        `dn: CN=${adUsers.logonHours},CN=Users,${BASE_DN}`,
        'changetype: modify',
        'replace: logonHours',
        `logonHours:: ${Buffer.alloc(21).toString('base64')}`,
        '',
        `dn: CN=${adUsers.workstation},CN=Users,${BASE_DN}`,
        'changetype: modify',
        'replace: userWorkstations',
        'userWorkstations: SOMEPC',
        '',
      ].join('\n'),
    );
  } finally {
    await stopSamba(proc);
  }
  // The messaging sockets are the stopped DC's runtime state; samba makes new ones at start.
  await run('tar', ['-C', ROOT, '--exclude=dc/msg.sock/*', '-cf', SNAPSHOT, 'dc']);
};

/**
 * Restores the provisioned domain and starts the DC. Fails (never skips) when Samba is missing.
 * `instance` 2, 3... start further DCs of the same domain (copies of the same database on their own
 * loopback address, 127.0.0.<instance+1>): enough for failover between domain controllers.
 */
export const startSambaDc = async (opts: { ip?: string; instance?: number } = {}): Promise<SambaDc> => {
  for (const b of ['samba', 'samba-tool', 'ldapsearch', 'faketime']) need(b);
  if (process.getuid?.() !== 0) throw new Error('Samba AD DC needs root (CI runs as root)');
  const instance = opts.instance ?? 1;
  const ip = opts.ip ?? `127.0.0.${instance + 1}`;
  const root = rootOf(instance);
  const smbConf = confIn(root);
  await stopLeftover(ip);
  if (!existsSync(SNAPSHOT)) {
    await stopLeftover('127.0.0.2');
    await provision('127.0.0.2');
  }
  rmSync(join(root, 'dc'), { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  await run('tar', ['-C', root, '-xf', SNAPSHOT]);
  // Only smb.conf holds absolute paths and the address (the databases are position-independent);
  // each instance also keeps its own pid file, or a second samba refuses to start.
  let c = readFileSync(smbConf, 'utf8').replace('[global]\n', `[global]\n\tpid directory = ${root}/dc\n`);
  if (instance !== 1)
    c = c.replaceAll(`${ROOT}/`, `${root}/`).replace(/^\tinterfaces = .*$/m, `\tinterfaces = ${ip}/8`);
  writeFileSync(smbConf, c);
  let proc = await startSamba(ip, smbConf);
  const S = ['-s', smbConf];
  const dc: SambaDc = {
    ip,
    url: `ldap://${ip}`,
    ldapsUrl: `ldaps://${ip}`,
    caFile: join(root, 'dc', 'private', 'tls', 'ca.pem'),
    tlsServerName: `DC1.${REALM}`,
    adminUpn: `Administrator@${REALM}`,
    adminPassword: ADMIN_PASSWORD,
    upn: (u) => `${u}@${REALM}`,
    dn: (u) => `CN=${u},CN=Users,${BASE_DN}`,
    tool: async (...a) => (await run('samba-tool', [...a, ...S])).stdout,
    ldapModify: (text) => ldif(ip, text),
    attribute: async (user, name) => {
      const { stdout } = await run('ldapsearch', [
        '-LLL',
        '-x',
        '-H',
        `ldap://${ip}`,
        '-D',
        `Administrator@${REALM}`,
        '-w',
        ADMIN_PASSWORD,
        '-b',
        `CN=${user},CN=Users,${BASE_DN}`,
        '-s',
        'base',
        name,
      ]);
      return stdout.match(new RegExp(`^${name}: (.*)$`, 'mi'))?.[1];
    },
    stop: async () => stopSamba(proc),
    start: async () => {
      proc = await startSamba(ip, smbConf);
    },
  };
  return dc;
};
