/**
 * What every admin route module is built with. Its own module so the route modules, which import
 * each other's schemas (the tenant overview shows sync runs), never import one another for it.
 */
import type { CloudContext } from '../context.ts';
import type { Gateway } from '../gateway/index.ts';
import type { Authenticator } from '../signin/types.ts';

export interface AdminDeps {
  ctx: CloudContext;
  gateway?: Pick<Gateway, 'revokeDeleted' | 'requestSync' | 'connections'>;
  authenticator?: Authenticator & { invalidate?(tenantId?: string): void };
}
