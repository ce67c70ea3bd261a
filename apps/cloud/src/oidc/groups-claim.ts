/**
 * The `groups` claim, chosen per application (client metadata `gatehouse_groups`): none, every
 * group, security groups only, or the groups assigned to the application; written as object ids
 * (default), NETBIOS\name or names. Past the client's limit the claim is left out and replaced by
 * a distributed-claims pointer (OIDC Core 5.6.2, as Entra does): `_claim_names.groups` names a
 * source whose endpoint lists the user's groups to a bearer of the user's access token.
 */
import type { Db } from '../db/index.ts';
import { GroupsClaimSetting } from '../store/clients.ts';
import { type Group, groupsOfUser } from '../store/groups.ts';

export const GROUPS_SOURCE = 'src1';

/** The groups of `userId` that a client with `setting` may see, in its order (by name). */
export const groupsForClient = async (
  db: Db,
  tenantId: string,
  userId: string,
  setting: GroupsClaimSetting,
): Promise<Group[]> => {
  if (setting.include === 'none') return [];
  const all = await groupsOfUser(db, tenantId, userId);
  if (setting.include === 'security') return all.filter((g) => g.security);
  if (setting.include === 'assigned') {
    const assigned = new Set(setting.assigned);
    return all.filter((g) => assigned.has(g.id));
  }
  return all;
};

export const claimValue = (g: Group, format: GroupsClaimSetting['format']): string =>
  format === 'id' ? g.id : format === 'netbios' ? (g.onPremName ?? g.name) : g.name;

/** Where the overage pointer sends the client. */
export const groupsEndpoint = (publicUrl: string, tenantId: string, userId: string) =>
  `${publicUrl}/${encodeURIComponent(tenantId)}/api/v1/users/${encodeURIComponent(userId)}/groups`;

/** The client's setting from its metadata; anything unreadable counts as no groups claim. */
export const settingOf = (metadata: unknown): GroupsClaimSetting | null => {
  const raw = (metadata as { gatehouse_groups?: unknown } | null)?.gatehouse_groups;
  if (raw === undefined) return null;
  const parsed = GroupsClaimSetting.safeParse(raw);
  return parsed.success && parsed.data.include !== 'none' ? parsed.data : null;
};

export type GroupsClaims =
  | Record<string, never>
  | { groups: string[] }
  | { _claim_names: { groups: string }; _claim_sources: Record<string, { endpoint: string }> };

/** The claims to merge into the user's ID token or userinfo for a client with this metadata. */
export const groupsClaims = async (
  db: Db,
  publicUrl: string,
  user: { id: string; tenantId: string },
  clientMetadata: unknown,
): Promise<GroupsClaims> => {
  const setting = settingOf(clientMetadata);
  if (!setting) return {};
  const groups = await groupsForClient(db, user.tenantId, user.id, setting);
  if (groups.length <= setting.limit) return { groups: groups.map((g) => claimValue(g, setting.format)) };
  return {
    _claim_names: { groups: GROUPS_SOURCE },
    _claim_sources: { [GROUPS_SOURCE]: { endpoint: groupsEndpoint(publicUrl, user.tenantId, user.id) } },
  };
};
