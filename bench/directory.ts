/**
 * The directory a benchmark runs against, as bench/run.ts starts it: OpenLDAP with `users` users
 * (test/harness/slapd.ts) or a Samba AD DC (test/harness/samba.ts), with the agent's config for it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Directory {
  kind: string;
  url: string;
  caFile?: string;
  domain: string;
  bindDns: string[];
  upns: string[];
  agentDirectory: Record<string, unknown>;
  /** The server process, when we know it (its CPU is reported too). */
  pid?: number;
  stop(): Promise<void>;
}

export const startDirectory = async (
  kind: string,
  userCount: string | undefined,
  work: string,
  password: string,
): Promise<Directory> => {
  if (kind === 'openldap') {
    const { startSlapd } = await import('../test/harness/slapd.ts');
    const n = Number(userCount ?? 1000);
    const domain = 'bench.test';
    const users = Array.from({ length: n }, (_, i) => ({
      uid: `u${i}`,
      password,
      mail: `u${i}@${domain}`,
    }));
    const s = await startSlapd({ users });
    const bindFile = join(work, 'bind-password');
    writeFileSync(bindFile, s.servicePassword, { mode: 0o600 });
    return {
      kind: 'openldap',
      pid: Number(readFileSync(join(s.dir, 'slapd.pid'), 'utf8').trim()) || undefined,
      url: s.url,
      domain,
      bindDns: users.map((u) => `uid=${u.uid},${s.peopleDn}`),
      upns: users.map((u) => u.mail),
      agentDirectory: {
        kind: 'openldap',
        urls: [s.url],
        bindDn: s.serviceDn,
        bindPasswordFile: bindFile,
        baseDns: [s.peopleDn],
      },
      stop: () => s.stop(),
    };
  }
  const { startSambaDc, REALM, BASE_DN } = await import('../test/harness/samba.ts');
  const dc = await startSambaDc();
  const n = Number(userCount ?? 40);
  const names = Array.from({ length: n }, (_, i) => `bench${i}`);
  // samba-tool takes ~0.4 s per call: a few at a time.
  for (let i = 0; i < n; i += 4) {
    await Promise.all(names.slice(i, i + 4).map((u) => dc.tool('user', 'create', u, password)));
  }
  const bindFile = join(work, 'bind-password');
  writeFileSync(bindFile, dc.adminPassword, { mode: 0o600 });
  return {
    kind: 'samba',
    url: dc.url,
    domain: REALM,
    bindDns: names.map((u) => dc.dn(u)),
    upns: names.map((u) => dc.upn(u)),
    agentDirectory: {
      kind: 'ad',
      urls: [dc.ldapsUrl],
      caFile: dc.caFile,
      tlsServerName: dc.tlsServerName,
      bindDn: dc.adminUpn,
      bindPasswordFile: bindFile,
      baseDns: [`CN=Users,${BASE_DN}`],
    },
    stop: () => dc.stop(),
  };
};
