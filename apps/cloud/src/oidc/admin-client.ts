/**
 * The tenant's built-in OIDC clients, both public (no secret), authorization code + PKCE, each
 * redirecting only to its own page on this cloud: the admin center, and the agent approval page.
 * They are static clients of each tenant's provider rather than rows of `clients`, whose ids are
 * global: every tenant gets the same well-known ids, built with its provider.
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

/**
 * The agent approval page's client (admin/approver-session.ts). Its own id, so its tokens are
 * never the admin center's: the admin API refuses them.
 */
export const AGENT_APPROVAL_CLIENT_ID = 'gatehouse-agent-approval';

export const agentApprovalCallback = (publicUrl: string, tenantId: string) =>
  `${publicUrl}/${tenantId}/agents/device/callback`;

export const agentApprovalClient = (publicUrl: string, tenantId: string): ClientMetadata => ({
  client_id: AGENT_APPROVAL_CLIENT_ID,
  client_name: 'Gatehouse agent approval',
  redirect_uris: [agentApprovalCallback(publicUrl, tenantId)],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
});
