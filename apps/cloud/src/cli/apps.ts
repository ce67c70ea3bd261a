/**
 * The operator CLI's application registrations (OIDC clients): the same operations as the admin
 * API's /apps routes, on the same directory functions. A secret is printed once, when it is made.
 * Every change writes an audit row with actor "operator".
 */
import { z } from 'zod';
import { audit } from '../store/audit.ts';
import {
  type AppView,
  createClient,
  deleteClient,
  GRANT_TYPES,
  getApp,
  IdTokenAlg,
  listApps,
  rotateClientSecret,
  type UpdateClientInput,
  updateClient,
} from '../store/clients.ts';
import { serviceUrls } from '../store/service-urls.ts';
import { getTenant } from '../store/tenants.ts';
import { ROLES } from '../store/users.ts';
import {
  type CliEnv,
  type Command,
  command,
  flag,
  many,
  OPERATOR,
  onOff,
  str,
  table,
  tenant,
} from './shared.ts';

const clientId = z.string({ error: 'is required' }).min(1).max(128);
const roles = z.array(z.enum([...ROLES, 'none'])).optional();
const noRoles = (r: string[] | undefined) =>
  (r?.includes('none') ? [] : r) as UpdateClientInput['adminRoles'];

const issuerOf = async (env: CliEnv, tenantId: string) =>
  `${(await serviceUrls(env.db, env.config)).publicUrl}/${tenantId}/v2.0`;

const oneApp = (app: AppView, issuer: string, secret?: string) => ({
  json: { ...app, ...(secret ? { clientSecret: secret } : {}), issuer },
  text: [
    `client_id: ${app.clientId}`,
    ...(secret ? [`client_secret: ${secret}`, '(shown once; store it now)'] : []),
    `name: ${app.name}`,
    `kind: ${app.public ? 'public' : 'confidential'}${app.firstParty ? '' : ', third-party (users consent)'}`,
    `grants: ${app.grantTypes.join(', ')}`,
    `redirect URIs: ${app.redirectUris.join(' ') || '-'}`,
    `post-logout redirect URIs: ${app.postLogoutRedirectUris.join(' ') || '-'}`,
    `admin roles: ${app.adminRoles.join(', ') || '-'}`,
    `ID token signing: ${app.idTokenAlg}`,
    `issuer: ${issuer}`,
  ].join('\n'),
});

const log = (env: CliEnv, tenantId: string, action: string, target: string, detail?: unknown) =>
  audit(env.db, { tenantId, actor: OPERATOR, action, target, detail }, env.now());

export const clientCommands: Record<string, Command> = {
  'client create': command({
    summary: 'an application (OAuth client); its secret is shown once',
    usage:
      '--tenant T --name N [--redirect-uri U]... [--post-logout-redirect-uri U]... [--public] [--grant-type G]... [--third-party] [--admin-role R]... [--id-token-alg ES256|RS256]',
    options: {
      tenant: str,
      name: str,
      'redirect-uri': many,
      'post-logout-redirect-uri': many,
      public: flag,
      'grant-type': many,
      'third-party': flag,
      'admin-role': many,
      'id-token-alg': str,
    },
    schema: z
      .object({
        tenant,
        name: z.string({ error: 'is required' }).min(1).max(200),
        'redirect-uri': z.array(z.url()).default([]),
        'post-logout-redirect-uri': z.array(z.url()).default([]),
        public: z.boolean().default(false),
        'grant-type': z.array(z.enum(GRANT_TYPES)).default([]),
        'third-party': z.boolean().default(false),
        'admin-role': z.array(z.enum(ROLES)).default([]),
        'id-token-alg': IdTokenAlg.optional(),
      })
      .refine((a) => a['redirect-uri'].length > 0 || a['grant-type'].length > 0, {
        message: 'give --redirect-uri (browser sign-in) or --grant-type (e.g. client_credentials)',
        path: ['redirect-uri'],
      }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      // With a redirect URI, --grant-type adds to the browser flow's grants; without, it is the list.
      const browser = a['redirect-uri'].length ? (['authorization_code', 'refresh_token'] as const) : [];
      const grantTypes = [...new Set([...browser, ...a['grant-type']])];
      const c = await createClient(
        env.db,
        a.tenant,
        {
          name: a.name,
          redirectUris: a['redirect-uri'],
          postLogoutRedirectUris: a['post-logout-redirect-uri'],
          public: a.public,
          grantTypes,
          firstParty: !a['third-party'],
          adminRoles: a['admin-role'],
          idTokenAlg: a['id-token-alg'],
        },
        env.now(),
      );
      const app = await getApp(env.db, a.tenant, c.clientId);
      await log(env, a.tenant, 'client.create', c.clientId, { ...app, groups: undefined });
      const one = oneApp(app, await issuerOf(env, a.tenant), c.clientSecret);
      return { json: { ...one.json, clientId: c.clientId }, text: one.text };
    },
  }),

  'client list': command({
    summary: "a tenant's applications (OAuth clients)",
    usage: '--tenant T',
    options: { tenant: str },
    schema: z.object({ tenant }),
    async run(env, a) {
      await getTenant(env.db, a.tenant);
      const apps = await listApps(env.db, a.tenant);
      return {
        json: apps,
        text: table(
          apps.map((c) => ({
            client_id: c.clientId,
            name: c.name,
            grants: c.grantTypes.join(','),
            auth: c.public ? 'none' : 'client_secret_basic',
            admin_roles: c.adminRoles.join(',') || null,
          })),
        ),
      };
    },
  }),

  'client show': command({
    summary: 'one application',
    usage: '--tenant T --client ID',
    options: { tenant: str, client: str },
    schema: z.object({ tenant, client: clientId }),
    async run(env, a) {
      return oneApp(await getApp(env.db, a.tenant, a.client), await issuerOf(env, a.tenant));
    },
  }),

  'client update': command({
    summary: 'change an application; a list flag replaces the whole list (--admin-role none clears)',
    usage:
      '--tenant T --client ID [--name N] [--redirect-uri U]... [--post-logout-redirect-uri U]... [--grant-type G]... [--public on|off] [--first-party on|off] [--admin-role R|none]... [--id-token-alg ES256|RS256]',
    options: {
      tenant: str,
      client: str,
      name: str,
      'redirect-uri': many,
      'post-logout-redirect-uri': many,
      'grant-type': many,
      public: str,
      'first-party': str,
      'admin-role': many,
      'id-token-alg': str,
    },
    schema: z.object({
      tenant,
      client: clientId,
      name: z.string().min(1).max(200).optional(),
      'redirect-uri': z.array(z.url()).optional(),
      'post-logout-redirect-uri': z.array(z.url()).optional(),
      'grant-type': z.array(z.enum(GRANT_TYPES)).optional(),
      public: onOff.optional(),
      'first-party': onOff.optional(),
      'admin-role': roles,
      'id-token-alg': IdTokenAlg.optional(),
    }),
    async run(env, a) {
      const patch: UpdateClientInput = {
        name: a.name,
        redirectUris: a['redirect-uri'],
        postLogoutRedirectUris: a['post-logout-redirect-uri'],
        grantTypes: a['grant-type'],
        public: a.public,
        firstParty: a['first-party'],
        adminRoles: noRoles(a['admin-role']),
        idTokenAlg: a['id-token-alg'],
      };
      const given = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
      const r = await updateClient(env.db, a.tenant, a.client, given);
      await log(env, a.tenant, 'client.update', a.client, { changed: Object.keys(given) });
      return oneApp(r.app, await issuerOf(env, a.tenant), r.clientSecret);
    },
  }),

  'client rotate-secret': command({
    summary: 'a new secret for a confidential application, shown once; the old one stops working',
    usage: '--tenant T --client ID',
    options: { tenant: str, client: str },
    schema: z.object({ tenant, client: clientId }),
    async run(env, a) {
      const secret = await rotateClientSecret(env.db, a.tenant, a.client);
      await log(env, a.tenant, 'client.secret.rotate', a.client);
      return {
        json: { clientId: a.client, clientSecret: secret },
        text: `client_id: ${a.client}\nclient_secret: ${secret}\n(shown once; store it now; the old secret no longer works)`,
      };
    },
  }),

  'client delete': command({
    summary: 'delete an application: its tokens stop working',
    usage: '--tenant T --client ID',
    options: { tenant: str, client: str },
    schema: z.object({ tenant, client: clientId }),
    async run(env, a) {
      const app = await getApp(env.db, a.tenant, a.client);
      await deleteClient(env.db, a.tenant, a.client);
      await log(env, a.tenant, 'client.delete', a.client, { name: app.name });
      return { json: { deleted: a.client }, text: `deleted ${a.client} (${app.name})` };
    },
  }),
};
