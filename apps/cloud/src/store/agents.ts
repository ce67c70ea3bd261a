/**
 * Registered agents. An agent is Active while the gateway hears from it (last_seen_at within the
 * liveness window the caller passes: config.storedLiveness, since nodes write presence in batches)
 * and Inactive after; a deleted agent keeps its row (deleted_at set) so its
 * certificate is refused at once, and long-silent agents are pruned.
 */
import { randomUUID } from 'node:crypto';
import { GatehouseError, MAX_AGENTS_PER_TENANT, TenantId } from '@gatehouse/protocol';
import { PostgresAdapter, type Selectable } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { AgentTable } from '../db/schema.ts';
import { parse } from './util.ts';

export interface Agent {
  id: string;
  tenantId: string;
  hostname: string;
  version: string;
  certSerial: string;
  certNotAfter: number;
  /** X25519 public key, base64url. */
  hpkePublicKey: string;
  externalIp: string | null;
  lastSeenAt: number | null;
  createdAt: number;
  deletedAt: number | null;
}

export type AgentStatus = 'active' | 'inactive';

const toAgent = (r: Selectable<AgentTable>): Agent => ({
  id: r.id,
  tenantId: r.tenant_id,
  hostname: r.hostname,
  version: r.version,
  certSerial: r.cert_serial,
  certNotAfter: r.cert_not_after,
  hpkePublicKey: r.hpke_public_key,
  externalIp: r.external_ip,
  lastSeenAt: r.last_seen_at,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
});

export const RegisterAgentInput = z.object({
  /** The id put in the certificate's CN; generated when absent. */
  id: z.string().min(1).max(128).optional(),
  tenantId: TenantId,
  hostname: z.string().min(1).max(255),
  version: z.string().max(64),
  certSerial: z.string().min(1).max(128),
  certNotAfter: z.number().int().nonnegative(),
  hpkePublicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'base64url X25519 public key'),
  externalIp: z.string().max(64).optional(),
});
export type RegisterAgentInput = z.input<typeof RegisterAgentInput>;

const liveAgentCount = async (db: Db, tenantId: string): Promise<number> => {
  const { n } = await db
    .selectFrom('agents')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('tenant_id', '=', tenantId)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(n);
};

/** agent_limit_reached when the tenant already has its 40 agents (a cheap check before any work). */
export const assertAgentCapacity = async (db: Db, tenantId: string): Promise<void> => {
  if ((await liveAgentCount(db, tenantId)) >= MAX_AGENTS_PER_TENANT) {
    throw new GatehouseError('agent_limit_reached', { tenant: tenantId, max: MAX_AGENTS_PER_TENANT });
  }
};

export interface RegisterAgentOptions {
  /** Runs inside the transaction after the limit check and before the insert (e.g. using up the
   * registration token), so a refused registration leaves the token unused. */
  beforeInsert?: (trx: Db) => Promise<void>;
}

/**
 * Records a newly registered agent; the tenant's 41st (non-deleted) agent is refused. On
 * PostgreSQL the tenant row is locked first, so concurrent registrations (on any cloud node)
 * count one after another and the limit holds exactly.
 */
export const registerAgent = async (
  db: Db,
  input: RegisterAgentInput,
  now: number = Date.now(),
  opts: RegisterAgentOptions = {},
): Promise<Agent> => {
  const a = parse(RegisterAgentInput, input);
  const id = a.id ?? randomUUID();
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  await db.transaction().execute(async (trx) => {
    if (postgres) {
      await trx.selectFrom('tenants').select('id').where('id', '=', a.tenantId).forUpdate().execute();
    }
    await assertAgentCapacity(trx, a.tenantId);
    await opts.beforeInsert?.(trx);
    await trx
      .insertInto('agents')
      .values({
        id,
        tenant_id: a.tenantId,
        hostname: a.hostname,
        version: a.version,
        cert_serial: a.certSerial,
        cert_not_after: a.certNotAfter,
        hpke_public_key: a.hpkePublicKey,
        external_ip: a.externalIp ?? null,
        last_seen_at: null,
        created_at: now,
        deleted_at: null,
      })
      .execute();
  });
  return (await getAgent(db, id))!;
};

/** The agent, deleted or not (check `deletedAt`), or null. */
export const getAgent = async (db: Db, id: string): Promise<Agent | null> => {
  const r = await db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? toAgent(r) : null;
};

export interface Liveness {
  now: number;
  inactiveAfterMs: number;
}

/** The tenant's agents that are not deleted, with their status. */
export const listAgents = async (
  db: Db,
  tenantId: string,
  { now, inactiveAfterMs }: Liveness,
): Promise<(Agent & { status: AgentStatus })[]> => {
  const rows = await db
    .selectFrom('agents')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('deleted_at', 'is', null)
    .orderBy('created_at')
    .execute();
  return rows.map((r) => ({
    ...toAgent(r),
    status: r.last_seen_at !== null && r.last_seen_at > now - inactiveAfterMs ? 'active' : 'inactive',
  }));
};

export const countActiveAgents = async (
  db: Db,
  tenantId: string,
  { now, inactiveAfterMs }: Liveness,
): Promise<number> => {
  const { n } = await db
    .selectFrom('agents')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('tenant_id', '=', tenantId)
    .where('deleted_at', 'is', null)
    .where('last_seen_at', '>', now - inactiveAfterMs)
    .executeTakeFirstOrThrow();
  return Number(n);
};

/**
 * Tenants with pass-through authentication on, by their number of active agents: how many have
 * none, one, two... (metrics: a gauge by bucket, never a series per tenant). One aggregate query.
 */
export const tenantsByActiveAgents = async (
  db: Db,
  { now, inactiveAfterMs }: Liveness,
): Promise<{ agents: number; tenants: number }[]> => {
  const perTenant = db
    .selectFrom('tenants')
    .leftJoin('agents', (j) =>
      j
        .onRef('agents.tenant_id', '=', 'tenants.id')
        .on('agents.deleted_at', 'is', null)
        .on('agents.last_seen_at', '>', now - inactiveAfterMs),
    )
    .select(['tenants.id', (eb) => eb.fn.count<number>('agents.id').as('n')])
    .where('tenants.pta_enabled', '=', 1)
    .groupBy('tenants.id');
  const rows = await db
    .selectFrom(perTenant.as('t'))
    .select(['t.n', (eb) => eb.fn.countAll<number>().as('tenants')])
    .groupBy('t.n')
    .execute();
  return rows.map((r) => ({ agents: Number(r.n), tenants: Number(r.tenants) }));
};

/** Marks the agent seen (at hello); false when it no longer exists or was deleted (one statement for both). */
export const touchAgent = async (db: Db, id: string, at: number, externalIp?: string): Promise<boolean> => {
  const [r] = await db
    .updateTable('agents')
    .set(
      externalIp === undefined
        ? { last_seen_at: at }
        : { last_seen_at: at, external_ip: externalIp.slice(0, 64) },
    )
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .execute();
  return Number(r?.numUpdatedRows ?? 0) > 0;
};

/** Ids per presence statement: a node's whole batch in a few statements, each a bounded parameter list. */
const TOUCH_CHUNK = 1_000;

/**
 * A node's periodic presence write: every agent it holds marked seen at `at`, one statement per
 * thousand ids, and which of them still exist (not deleted). A deleted agent's id is missing.
 */
export const touchAgents = async (db: Db, ids: readonly string[], at: number): Promise<Set<string>> => {
  const live = new Set<string>();
  for (let i = 0; i < ids.length; i += TOUCH_CHUNK) {
    const rows = await db
      .updateTable('agents')
      .set({ last_seen_at: at })
      .where('id', 'in', ids.slice(i, i + TOUCH_CHUNK))
      .where('deleted_at', 'is', null)
      .returning('id')
      .execute();
    for (const r of rows) live.add(r.id);
  }
  return live;
};

/** Deletes an agent of the tenant (its certificate is refused from now on); not_found otherwise. */
export const deleteAgent = async (
  db: Db,
  tenantId: string,
  id: string,
  now: number = Date.now(),
): Promise<void> => {
  const r = await db
    .updateTable('agents')
    .set({ deleted_at: now })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) === 0) throw new GatehouseError('not_found', { agent: id });
};

/**
 * Removes agents silent (or deleted) for longer than `olderThanMs`. Returns how many went. The
 * gateway refuses certificates of agents it cannot find, so removal is as final as deletion.
 */
export const pruneAgents = async (db: Db, now: number, olderThanMs: number): Promise<number> => {
  const cutoff = now - olderThanMs;
  const r = await db
    .deleteFrom('agents')
    .where((eb) =>
      eb.or([
        eb('deleted_at', '<', cutoff),
        eb.and([eb('last_seen_at', 'is', null), eb('created_at', '<', cutoff)]),
        eb('last_seen_at', '<', cutoff),
      ]),
    )
    .executeTakeFirst();
  return Number(r.numDeletedRows);
};

export const UpdateAgentCertInput = z.object({
  certSerial: z.string().min(1).max(128),
  certNotAfter: z.number().int().nonnegative(),
  hpkePublicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'base64url X25519 public key'),
});

/** After a renewal: the new certificate and HPKE key replace the old ones. */
export const updateAgentCert = async (
  db: Db,
  id: string,
  input: z.input<typeof UpdateAgentCertInput>,
): Promise<void> => {
  const c = parse(UpdateAgentCertInput, input);
  const r = await db
    .updateTable('agents')
    .set({ cert_serial: c.certSerial, cert_not_after: c.certNotAfter, hpke_public_key: c.hpkePublicKey })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) === 0) throw new GatehouseError('not_found', { agent: id });
};

/** The HPKE public keys of the tenant's agents seen since `since` (not deleted). */
export const activeAgentKeys = (db: Db, tenantId: string, since: number) =>
  db
    .selectFrom('agents')
    .select(['id', 'hpke_public_key', 'last_seen_at'])
    .where('tenant_id', '=', tenantId)
    .where('deleted_at', 'is', null)
    .where('last_seen_at', '>', since)
    .execute();
