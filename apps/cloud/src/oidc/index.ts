/**
 * Mounts every tenant's OIDC provider and sign-in pages on the cloud's fastify app:
 * `/:tenantId/v2.0/*` goes to the tenant's oidc-provider, `/:tenantId/v2.0/interaction/:uid...`
 * to the sign-in pages.
 */
import { GatehouseError } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CloudContext } from '../context.ts';
import type { Authenticator } from '../signin/types.ts';
import { listDomains } from '../store/domains.ts';
import { bindRequestLog } from '../web/request-log.ts';
import { registerInteractions } from './interactions.ts';
import type { Oidc } from './provider.ts';

export type { Oidc, TenantOidc } from './provider.ts';
export { createOidc } from './provider.ts';

type Raw = FastifyRequest['raw'] & { originalUrl?: string };

/** Registers the OIDC routes and sign-in pages in front of the tenants' providers (`oidc`). */
export const registerOidc = (
  app: FastifyInstance,
  ctx: CloudContext,
  deps: { authenticator: Authenticator; oidc: Oidc },
): void => {
  const { oidc } = deps;
  app.addHook('onClose', async () => oidc.close());

  app.register(async (scope) => {
    // oidc-provider reads request bodies itself: leave the stream untouched for it.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    type TenantReq = FastifyRequest<{ Params: { tenantId: string } }>;
    /** Hands the request to the tenant's provider, at `path` under the issuer (default: as sent). */
    const toProvider = async (req: TenantReq, reply: FastifyReply, path?: string) => {
      const t = await oidc.forTenant(req.params.tenantId);
      if (!t) throw new GatehouseError('not_found', { tenant: req.params.tenantId });
      reply.hijack();
      const raw = req.raw as Raw;
      bindRequestLog(raw, req.log);
      const url = raw.url ?? '/';
      // The mounted-app convention oidc-provider follows: url relative to the mount, originalUrl whole.
      // A request from outside the mount (RFC 8414's path-inserted metadata) is given as if made
      // under it, so the provider still writes its endpoints under the issuer.
      raw.originalUrl = path ? `${t.prefix}${path}` : url;
      raw.url = path ?? (url.slice(t.prefix.length) || '/');
      t.callback(raw, reply.raw);
    };
    scope.all('/:tenantId/v2.0/*', (req: TenantReq, reply) => toProvider(req, reply));
    // RFC 8414 section 3.1: metadata of an issuer with a path is also at the host's well-known
    // path with the issuer's path appended (the provider serves the suffixed one itself).
    scope.get('/.well-known/oauth-authorization-server/:tenantId/v2.0', (req: TenantReq, reply) =>
      toProvider(req, reply, '/.well-known/oauth-authorization-server'),
    );
  });

  registerInteractions(app, oidc, {
    authenticator: deps.authenticator,
    federationUrls: async (tenantId) =>
      (await listDomains(ctx.db, tenantId)).flatMap((d) =>
        d.kind === 'federated' && d.verified && d.federationUrl ? [d.federationUrl] : [],
      ),
  });
};
