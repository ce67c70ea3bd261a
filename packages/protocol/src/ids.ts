/**
 * The identifiers and names that cross a boundary (HTTP routes, CLI flags, agent frames, NATS
 * relays, configuration), each defined once so that every entry point accepts exactly the same set.
 */
import { z } from 'zod';

/**
 * A tenant id. The cloud makes them as UUIDs; the pattern is wider only so that fixtures and
 * existing deployments' ids stay valid. It also keeps an id a single NATS subject token (no
 * '*', '>', whitespace) and a single URL path segment (issuers are PUBLIC_URL/TENANT_ID/v2.0).
 */
export const TENANT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const TenantId = z.string().regex(TENANT_ID_PATTERN, 'tenant id').brand<'TenantId'>();
/** A tenant id that went through the schema: code holding one need not check it again. */
export type TenantId = z.infer<typeof TenantId>;

/** Whether `s` is a well-formed tenant id (a type guard, for paths that answer 404 rather than 400). */
export const isTenantId = (s: string): s is TenantId => TENANT_ID_PATTERN.test(s);

/**
 * Longest distinguished name accepted anywhere: synced users and groups, validation requests and
 * relays. One limit, so a DN the cloud stored is never refused further down the line.
 * AD sets no total limit (each RDN is at most 255); 2,048 holds deep OU trees with room to spare
 * and a full validate frame stays far below MAX_FRAME_BYTES.
 */
export const MAX_DN_LENGTH = 2048;
/** Empty only in a validate frame for a user the cloud holds no DN for (the agent then binds by UPN). */
export const Dn = z.string().max(MAX_DN_LENGTH);

/** Other opaque ids on the wire (agent, request, run ids). */
export const Id = z.string().min(1).max(128);
