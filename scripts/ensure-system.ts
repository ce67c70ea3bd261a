/**
 * Makes sure the Debian packages that the tests and the demo need are installed, and that the
 * local PostgreSQL and NATS (for the scale-out tests) are running where the machine has them.
 *
 *   npx node scripts/ensure-system.ts [--check]     (--check: report only, change nothing)
 *
 * As root it installs what is missing with apt-get; otherwise it tries `sudo -n`, and failing
 * that prints the exact commands to run and exits 1.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';

/** The one list: a binary we need, and the Debian package that ships it. A package that ships no
 * binary of its own (a Python module) names a command that succeeds once it is there (`probe`). */
export const SYSTEM_PACKAGES: ReadonlyArray<{ bin: string; pkg: string; why: string; probe?: string[] }> = [
  { bin: 'slapd', pkg: 'slapd', why: 'OpenLDAP directory for tests and the demo' },
  { bin: 'ldapmodify', pkg: 'ldap-utils', why: 'seeding the OpenLDAP directory' },
  { bin: 'chromium', pkg: 'chromium', why: 'browser tests' },
  { bin: 'openssl', pkg: 'openssl', why: 'test certificates' },
  { bin: 'samba-tool', pkg: 'samba', why: 'Active Directory domain controller for the AD tests' },
  { bin: 'wbinfo', pkg: 'winbind', why: 'Samba AD DC' },
  { bin: 'kinit', pkg: 'krb5-user', why: 'Kerberos tools for the AD tests' },
  { bin: 'faketime', pkg: 'faketime', why: 'clock-skew and expiry tests' },
  {
    bin: 'ss',
    pkg: 'iproute2',
    why: 'finding a leftover domain controller by its socket; the no-listening-socket check',
  },
  { bin: 'pkill', pkg: 'procps', why: 'stopping a leftover domain controller' },
  { bin: 'python3', pkg: 'python3', why: 'a domain controller that drops packets, in the failover tests' },
  {
    bin: 'python3',
    pkg: 'python3-authlib',
    why: 'a relying party and API by other authors, in the OpenID interoperability test',
    // Debian's own interpreter: a python3 earlier on PATH (pyenv, a venv) does not see Debian's modules.
    probe: ['/usr/bin/python3', '-c', 'import authlib.jose, authlib.integrations.requests_client'],
  },
  { bin: 'systemd-analyze', pkg: 'systemd', why: "verifying the cloud's systemd unit (deploy/systemd)" },
];

/** Answers debconf would otherwise ask (slapd must not build its own system database). */
const PRESEED = 'slapd slapd/no_configuration boolean true\n';

const SEARCH = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const which = (bin: string): string | null => {
  for (const d of SEARCH) {
    if (!d) continue;
    try {
      accessSync(join(d, bin), constants.X_OK);
      return join(d, bin);
    } catch {}
  }
  return null;
};

const say = (msg: string) => process.stdout.write(`ensure-system: ${msg}\n`);

const isRoot = () => process.getuid?.() === 0;
const canSudo = () =>
  which('sudo') !== null && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;

/** Runs a command as root (directly or through sudo -n); returns true on exit status 0. */
const asRoot = (cmd: string[], input?: string, env: Record<string, string> = {}): boolean => {
  const [file, args] = isRoot()
    ? [cmd[0], cmd.slice(1)]
    : ['sudo', ['-n', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...cmd]];
  const r = spawnSync(file, args, {
    input,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'inherit', 'inherit'],
    env: { ...process.env, ...env },
  });
  return r.status === 0;
};

const portOpen = (port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });

const waitPort = async (port: number, ms: number): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await portOpen(port)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
};

export const missingPackages = (): string[] => [
  ...new Set(
    SYSTEM_PACKAGES.filter(
      (p) =>
        which(p.bin) === null ||
        (p.probe !== undefined && spawnSync(p.probe[0]!, p.probe.slice(1), { stdio: 'ignore' }).status !== 0),
    ).map((p) => p.pkg),
  ),
];

const installPackages = (pkgs: string[]): boolean => {
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  say(`installing ${pkgs.join(' ')}`);
  return (
    asRoot(['debconf-set-selections'], PRESEED, env) &&
    asRoot(['apt-get', 'update', '-q'], undefined, env) &&
    // With recommends, as a person would install them (Chromium's fonts come that way).
    asRoot(['apt-get', 'install', '-y', '-q', ...pkgs], undefined, env)
  );
};

/** Services the machine may have installed; started with the machine's own documented commands. */
const SERVICES: ReadonlyArray<{ name: string; port: number; present: () => boolean; start: () => string[] }> =
  [
    {
      name: 'PostgreSQL',
      port: 5432,
      present: () => which('pg_ctlcluster') !== null && existsSync('/etc/postgresql'),
      start: () => {
        const version = readdirSync('/etc/postgresql').sort().at(-1) ?? '';
        return ['pg_ctlcluster', '--skip-systemctl-redirect', version, 'main', 'start'];
      },
    },
    {
      name: 'NATS',
      port: 4222,
      present: () => existsSync('/usr/sbin/nats-server'),
      start: () => [
        'start-stop-daemon',
        '--start',
        '--oknodo',
        '--background',
        '--exec',
        '/usr/sbin/nats-server',
        '--',
        '-a',
        '127.0.0.1',
        '-p',
        '4222',
        '-js',
        '-sd',
        '/var/lib/nats-server',
        '-l',
        '/var/log/nats-server.log',
      ],
    },
  ];

const ensureServices = async (check: boolean): Promise<void> => {
  for (const svc of SERVICES) {
    if (await portOpen(svc.port)) {
      say(`${svc.name} is listening on 127.0.0.1:${svc.port}`);
      continue;
    }
    if (!svc.present()) {
      say(`${svc.name} is not installed here (only the scale-out tests need it)`);
      continue;
    }
    if (check || !(isRoot() || canSudo())) {
      say(`${svc.name} is installed but not running; start it with: ${svc.start().join(' ')}`);
      continue;
    }
    say(`starting ${svc.name}`);
    const ok = asRoot(svc.start()) && (await waitPort(svc.port, 15_000));
    say(
      ok
        ? `${svc.name} is listening on 127.0.0.1:${svc.port}`
        : `${svc.name} did not start (scale-out tests will fail)`,
    );
  }
};

/** Returns 0 when everything needed is present, 1 otherwise. */
export const ensureSystem = async (opts: { check?: boolean } = {}): Promise<number> => {
  const missing = missingPackages();
  if (missing.length === 0) {
    say(`packages present: ${[...new Set(SYSTEM_PACKAGES.map((p) => p.pkg))].join(', ')}`);
  } else if (opts.check || !(isRoot() || canSudo())) {
    process.stderr.write(
      `ensure-system: missing Debian packages: ${missing.join(' ')}\n` +
        'Install them as root with:\n' +
        `  echo '${PRESEED.trim()}' | debconf-set-selections\n` +
        '  apt-get update\n' +
        `  DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing.join(' ')}\n`,
    );
    return 1;
  } else if (!installPackages(missing)) {
    process.stderr.write(`ensure-system: apt-get could not install ${missing.join(' ')}\n`);
    return 1;
  } else {
    const still = missingPackages();
    if (still.length) {
      process.stderr.write(`ensure-system: still missing after install: ${still.join(' ')}\n`);
      return 1;
    }
  }
  await ensureServices(opts.check ?? false);
  return 0;
};

if (import.meta.main) {
  process.exitCode = await ensureSystem({ check: process.argv.includes('--check') });
}
