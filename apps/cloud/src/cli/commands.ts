/**
 * The operator CLI's directory commands (tenants, domains, users). Every change writes an audit
 * row with actor "operator".
 */
import { z } from 'zod';
import { storedLiveness } from '../config.ts';
import { countActiveAgents } from '../store/agents.ts';
import { audit } from '../store/audit.ts';
import { addDomain, listDomains, setDomainKind, verifyDomain } from '../store/domains.ts';
import { serviceUrls } from '../store/service-urls.ts';
import { createTenant, getTenant, listTenants } from '../store/tenants.ts';
import { createCloudUser, listUsers, ROLES } from '../store/users.ts';
import { DomainName, Upn } from '../store/util.ts';
import { apiCommands } from './apis.ts';
import { clientCommands } from './apps.ts';
import { auditCommands } from './audit.ts';
import { backupCommands } from './backup.ts';
import { groupCommands } from './groups.ts';
import { initCommands } from './init.ts';
import { lockoutCommands } from './lockout.ts';
import { opsCommands } from './ops.ts';
import {
  type Command,
  command,
  count,
  flag,
  iso,
  many,
  OPERATOR,
  passwordSource,
  str,
  table,
  tenant,
} from './shared.ts';

export type { CliEnv, Command } from './shared.ts';

const adminPw = passwordSource('admin-password-file', 'admin-password-stdin');
const userPw = passwordSource('password-file', 'password-stdin');

export const commands: Record<string, Command> = {
  ...initCommands,
  'tenant create': command({
    summary: 'a tenant, its first domain and its cloud-only Global Administrator',
    usage:
      '--name N --domain D --admin-upn U (--admin-password-file F | --admin-password-stdin) [--admin-display-name N]',
    options: {
      name: str,
      domain: str,
      'admin-upn': str,
      'admin-password-file': str,
      'admin-password-stdin': flag,
      'admin-display-name': str,
    },
    schema: z
      .object({
        name: z.string({ error: 'is required' }).min(1).max(200),
        domain: DomainName,
        'admin-upn': Upn,
        'admin-password-file': z.string().optional(),
        'admin-password-stdin': z.boolean().optional(),
        'admin-display-name': z.string().max(256).optional(),
      })
      .refine(adminPw.refine, { message: adminPw.message, path: ['admin-password-file'] }),
    async run(env, a) {
      const password = await env.readPassword(a['admin-password-file'], a['admin-password-stdin'] === true);
      const r = await createTenant(env, {
        name: a.name,
        domain: a.domain,
        admin: { upn: a['admin-upn'], password, displayName: a['admin-display-name'] },
      });
      await audit(
        env.db,
        {
          tenantId: r.tenantId,
          actor: OPERATOR,
          action: 'tenant.create',
          target: r.tenantId,
          detail: { name: a.name, domain: a.domain, admin: a['admin-upn'] },
        },
        env.now(),
      );
      const [domain] = await listDomains(env.db, r.tenantId);
      return {
        json: { ...r, domain: { name: domain!.name, verified: false, txtRecord: domain!.txtRecord } },
        text: `tenant ${r.tenantId} created\nadmin ${a['admin-upn']} (${r.adminUserId})\nto verify ${domain!.name}, publish TXT "${domain!.txtRecord}" at ${domain!.name}, then run: gatehouse domain verify --tenant ${r.tenantId} --name ${domain!.name}`,
      };
    },
  }),

  'tenant show': command({
    summary: "a tenant's settings, issuer, active agents and domains",
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      const t = await getTenant(env.db, a.tenant);
      const domains = await listDomains(env.db, t.id);
      const liveness = { now: env.now(), inactiveAfterMs: storedLiveness(env.config) };
      const activeAgents = await countActiveAgents(env.db, t.id, liveness);
      const { publicUrl } = await serviceUrls(env.db, env.config);
      const issuer = `${publicUrl}/${t.id}/v2.0`;
      const { caCertPem, ...shown } = t;
      const json = { ...shown, caCertPem, activeAgents, domains, issuer };
      const text = [
        `tenant ${t.id} "${t.name}" created ${iso(t.createdAt)}`,
        `pass-through authentication: ${t.ptaEnabled ? 'on' : 'off'} (active agents: ${activeAgents})`,
        `legacy authentication (password grant): ${t.legacyAuth ? 'on' : 'off'}`,
        `just-in-time users: ${t.jitUsers ? 'on' : 'off'}`,
        `login attribute: ${t.loginAttribute}`,
        `lockout: ${t.lockoutThreshold} failures, ${t.lockoutDurationS} s`,
        `issuer: ${issuer}`,
        '',
        table(
          domains.map((d) => ({
            domain: d.name,
            kind: d.kind,
            verified: d.verified,
            federation: d.federationUrl,
          })),
        ),
      ].join('\n');
      return { json, text };
    },
  }),

  'tenant list': command({
    summary: 'every tenant',
    usage: '',
    options: {},
    schema: z.object({}),
    async run(env) {
      const ts = await listTenants(env.db);
      return {
        json: ts.map(({ caCertPem: _, ...t }) => t),
        text: table(ts.map((t) => ({ id: t.id, name: t.name, created: iso(t.createdAt) }))),
      };
    },
  }),

  'domain add': command({
    summary: 'a custom domain, verified later by a DNS TXT record',
    usage: '--tenant T --name D',
    options: { tenant: str, name: str },
    schema: z.object({ tenant, name: DomainName }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const d = await addDomain(env.db, a.tenant, a.name, env.now());
      await audit(
        env.db,
        { tenantId: a.tenant, actor: OPERATOR, action: 'domain.add', target: d.name },
        env.now(),
      );
      return {
        json: d,
        text: `domain ${d.name} added; publish TXT "${d.txtRecord}" at ${d.name}, then verify it`,
      };
    },
  }),

  'domain verify': command({
    summary: "checks a domain's TXT record (--force skips the DNS check)",
    usage: '--tenant T --name D [--force]',
    options: { tenant: str, name: str, force: flag },
    schema: z.object({ tenant, name: DomainName, force: z.boolean().default(false) }),
    async run(env, a) {
      const d = await verifyDomain(env.db, a.tenant, a.name, { force: a.force });
      await audit(
        env.db,
        {
          tenantId: a.tenant,
          actor: OPERATOR,
          action: 'domain.verify',
          target: d.name,
          detail: { force: a.force },
        },
        env.now(),
      );
      return { json: d, text: `domain ${d.name} verified` };
    },
  }),

  'domain list': command({
    summary: "a tenant's domains and their TXT records",
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const ds = await listDomains(env.db, a.tenant);
      return {
        json: ds,
        text: table(
          ds.map((d) => ({
            domain: d.name,
            kind: d.kind,
            verified: d.verified,
            txt: d.verified ? null : d.txtRecord,
            federation: d.federationUrl,
          })),
        ),
      };
    },
  }),

  'domain set-kind': command({
    summary: 'a domain signs in here (managed) or at its own identity provider (federated)',
    usage: '--tenant T --name D --kind managed|federated [--federation-url https://...]',
    options: { tenant: str, name: str, kind: str, 'federation-url': str },
    schema: z.object({
      tenant,
      name: DomainName,
      kind: z.enum(['managed', 'federated']),
      'federation-url': z.url({ protocol: /^https$/ }).optional(),
    }),
    async run(env, a) {
      const d = await setDomainKind(
        env.db,
        a.tenant,
        a.name,
        a.kind === 'federated'
          ? { kind: 'federated', federationUrl: a['federation-url'] ?? '' }
          : { kind: 'managed' },
      );
      await audit(
        env.db,
        {
          tenantId: a.tenant,
          actor: OPERATOR,
          action: 'domain.set_kind',
          target: d.name,
          detail: { kind: d.kind, federationUrl: d.federationUrl },
        },
        env.now(),
      );
      return {
        json: d,
        text: `domain ${d.name} is ${d.kind}${d.federationUrl ? ` (${d.federationUrl})` : ''}`,
      };
    },
  }),

  'user create': command({
    summary: 'a cloud-only user',
    usage:
      '--tenant T --upn U (--password-file F | --password-stdin) [--role R]... [--display-name N] [--mail M]',
    options: {
      tenant: str,
      upn: str,
      'password-file': str,
      'password-stdin': flag,
      role: many,
      'display-name': str,
      mail: str,
    },
    schema: z
      .object({
        tenant,
        upn: Upn,
        'password-file': z.string().optional(),
        'password-stdin': z.boolean().optional(),
        role: z.array(z.enum(ROLES)).default([]),
        'display-name': z.string().max(256).optional(),
        mail: z.string().max(256).optional(),
      })
      .refine(userPw.refine, { message: userPw.message, path: ['password-file'] }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const password = await env.readPassword(a['password-file'], a['password-stdin'] === true);
      const u = await createCloudUser(
        env.db,
        a.tenant,
        { upn: a.upn, password, roles: a.role, displayName: a['display-name'], mail: a.mail },
        env.now(),
      );
      await audit(
        env.db,
        {
          tenantId: a.tenant,
          actor: OPERATOR,
          action: 'user.create',
          target: u.upn,
          detail: { roles: u.roles },
        },
        env.now(),
      );
      return {
        json: u,
        text: `user ${u.upn} created (${u.id})${u.roles.length ? ` roles: ${u.roles.join(', ')}` : ''}`,
      };
    },
  }),

  'user list': command({
    summary: 'synced and cloud-only users',
    usage: '--tenant T [--search S] [--limit N] [--cursor C]',
    options: { tenant: str, search: str, limit: str, cursor: str },
    schema: z.object({
      tenant,
      search: z.string().max(256).optional(),
      limit: count.max(1000).default(100),
      cursor: z.string().optional(),
    }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const page = await listUsers(env.db, a.tenant, { search: a.search, limit: a.limit, cursor: a.cursor });
      const rows = page.users.map((u) => ({
        upn: u.upn,
        source: u.source,
        enabled: u.enabled,
        roles: u.roles.join(',') || null,
        name: u.displayName,
      }));
      return {
        json: page,
        text: table(rows) + (page.nextCursor ? `\nmore: --cursor ${page.nextCursor}` : ''),
      };
    },
  }),

  ...clientCommands,
  ...opsCommands,
  ...apiCommands,
  ...lockoutCommands,
  ...auditCommands,
  ...backupCommands,
  ...groupCommands,
};
