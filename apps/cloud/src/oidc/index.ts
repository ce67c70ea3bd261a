/**
 * Mounts every tenant's OIDC provider and sign-in pages on the cloud's fastify app:
 * `/:tenantId/v2.0/*` goes to the tenant's oidc-provider, `/:tenantId/v2.0/interaction/:uid...`
 * to the sign-in pages.
 */
import { GatehouseError } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CloudContext } from '../context.ts';
import { listDomains } from '../directory/domains.ts';
import { bindRequestLog } from '../http/request-log.ts';
import type { Authenticator } from '../signin/types.ts';
import { registerInteractions } from './interactions.ts';
import { createOidc, type Oidc } from './provider.ts';

export type { Oidc, TenantOidc } from './provider.ts';
export { createOidc } from './provider.ts';

type Raw = FastifyRequest['raw'] & { originalUrl?: string };

/** Registers the OIDC routes; returns the provider cache (for invalidation on key or tenant changes). */
export const registerOidc = (
  app: FastifyInstance,
  ctx: CloudContext,
  deps: { authenticator: Authenticator },
): Oidc => {
  const oidc = createOidc(ctx, deps);
  app.addHook('onClose', async () => oidc.close());

  app.register(async (scope) => {
    // oidc-provider reads request bodies itself: leave the stream untouched for it.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    scope.all('/:tenantId/v2.0/*', async (req: FastifyRequest<{ Params: { tenantId: string } }>, reply) => {
      const t = await oidc.forTenant(req.params.tenantId);
      if (!t) throw new GatehouseError('not_found', { tenant: req.params.tenantId });
      reply.hijack();
      const raw = req.raw as Raw;
      bindRequestLog(raw, req.log);
      const url = raw.url ?? '/';
      // The mounted-app convention oidc-provider follows: url relative to the mount, originalUrl whole.
      raw.originalUrl = url;
      raw.url = url.slice(t.prefix.length) || '/';
      t.callback(raw, reply.raw);
    });
  });

  registerInteractions(app, oidc, {
    ...deps,
    federationUrls: async (tenantId) =>
      (await listDomains(ctx.db, tenantId)).flatMap((d) =>
        d.kind === 'federated' && d.verified && d.federationUrl ? [d.federationUrl] : [],
      ),
  });
  return oidc;
};
