/**
 * The admin center's OIDC client: public (no secret), authorization code + PKCE, redirecting to the
 * tenant's own admin center. It is a static client of each tenant's provider rather than a row of
 * `clients`, whose ids are global: every tenant gets the same well-known id, built with its provider.
 */
import type { ClientMetadata } from 'oidc-provider';

export const ADMIN_CLIENT_ID = 'gatehouse-admin-center';

export const adminCenterPath = (tenantId: string) => `/${tenantId}/admin/`;

export const adminCenterClient = (publicUrl: string, tenantId: string): ClientMetadata => ({
  client_id: ADMIN_CLIENT_ID,
  client_name: 'Gatehouse admin center',
  redirect_uris: [`${publicUrl}/${tenantId}/admin/callback`],
  post_logout_redirect_uris: [`${publicUrl}/${tenantId}/admin/`],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
});
