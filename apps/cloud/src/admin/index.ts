/**
 * The admin API (/:tenantId/api/v1/...), the admin center (/:tenantId/admin/) and the agent
 * approval page (/:tenantId/agents/device), mounted on the cloud's HTTPS app. The admin center is
 * static HTML and one vanilla JS module that uses only the public API; it and the approval page
 * sign in through the tenant's own OIDC provider.
 */
import { basename, join } from 'node:path';
import fastifyStatic from '@fastify/static';
import { GatehouseError } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Oidc } from '../oidc/index.ts';
import { BASE, type RouteDef, registerApiRoutes } from './api.ts';
import type { AdminDeps } from './deps.ts';
import { registerDeviceApproval } from './device-approval.ts';
import { openApiDocument } from './openapi.ts';
import { apiRoutes } from './routes-apis.ts';
import { appRoutes } from './routes-apps.ts';
import { directoryRoutes } from './routes-directory.ts';
import { exportRoutes } from './routes-export.ts';
import { groupRoutes } from './routes-groups.ts';
import { tenantRoutes } from './routes-tenant.ts';

export { ADMIN_CLIENT_ID } from '../oidc/admin-client.ts';
export type { AdminDeps } from './deps.ts';

export const adminRoutes = (deps: AdminDeps): RouteDef[] => [
  ...tenantRoutes(deps),
  ...directoryRoutes(deps),
  ...exportRoutes(deps),
  ...appRoutes(deps),
  ...groupRoutes(deps),
  ...apiRoutes(deps),
];

const WEB = join(import.meta.dirname, 'web');
const ASSETS: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'apps.js': 'text/javascript; charset=utf-8',
};

// The admin center's own policy: its script, style and API calls from this origin only. The headers
// every answer carries (nosniff, referrer, framing, HSTS) come from http/security-headers.ts.
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'cache-control': 'no-store',
};

type TenantReq = FastifyRequest<{ Params: { tenantId: string; asset?: string } }>;

export const registerAdmin = (app: FastifyInstance, deps: AdminDeps & { oidc: Oidc }) => {
  const routes = adminRoutes(deps);
  registerApiRoutes(app, deps.ctx, deps.oidc, routes);
  registerDeviceApproval(app, deps.ctx, deps.oidc);

  const tenantExists = async (req: TenantReq) => {
    if (!(await deps.oidc.forTenant(req.params.tenantId)))
      throw new GatehouseError('not_found', { tenant: req.params.tenantId });
  };

  app.get(`${BASE}/openapi.json`, async (req: TenantReq) => {
    await tenantExists(req);
    return openApiDocument(routes, deps.ctx.config.publicUrl, req.params.tenantId);
  });

  // @fastify/static sends the files (type, length, ETag, 304s); its own routes stay off since the
  // prefix has the tenant in it, and only the files named in ASSETS are ever served.
  app.register(fastifyStatic, {
    root: WEB,
    serve: false,
    index: false,
    // no-store is PAGE_HEADERS'; the scripts keep text/javascript, the type HTML names for them.
    cacheControl: false,
    setHeaders: (reply, path) => {
      const type = ASSETS[basename(path)];
      if (type) reply.header('content-type', type);
    },
  });
  const page = async (req: TenantReq, reply: FastifyReply) => {
    await tenantExists(req);
    return reply.headers(PAGE_HEADERS).sendFile('index.html');
  };
  app.get('/:tenantId/admin', (req: TenantReq, reply) =>
    reply.redirect(`/${encodeURIComponent(req.params.tenantId)}/admin/`),
  );
  app.get('/:tenantId/admin/', page);
  app.get('/:tenantId/admin/callback', page);
  app.get('/:tenantId/admin/:asset', async (req: TenantReq, reply) => {
    const name = req.params.asset ?? '';
    if (!Object.hasOwn(ASSETS, name)) throw new GatehouseError('not_found');
    return reply.headers(PAGE_HEADERS).sendFile(name);
  });
};
