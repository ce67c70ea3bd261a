/**
 * Tenant domains. Home realm discovery maps a user name's domain to how the user signs in, so a
 * domain belongs to one tenant only, and ownership is proven by a DNS TXT record.
 */
import { randomBytes } from 'node:crypto';
import { resolveTxt as dnsResolveTxt } from 'node:dns/promises';
import { GatehouseError, TenantId } from '@gatehouse/protocol';
import type { Selectable } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import type { DomainTable } from '../db/schema.ts';
import { DomainName, isUniqueViolation, parse } from './util.ts';

export type DomainKind = 'managed' | 'federated';

export interface Domain {
  name: string;
  tenantId: string;
  kind: DomainKind;
  verified: boolean;
  verificationCode: string;
  /** The TXT record value to publish at the domain to prove ownership. */
  txtRecord: string;
  federationUrl: string | null;
  createdAt: number;
}

const TXT_PREFIX = 'gatehouse-verify=';

const toDomain = (r: Selectable<DomainTable>): Domain => ({
  name: r.name,
  tenantId: r.tenant_id,
  kind: r.kind === 'federated' ? 'federated' : 'managed',
  verified: r.verified === 1,
  verificationCode: r.verification_code,
  txtRecord: `${TXT_PREFIX}${r.verification_code}`,
  federationUrl: r.federation_url,
  createdAt: r.created_at,
});

/** Inserts a managed, unverified domain with `db` (which may be a transaction). */
export const insertDomain = async (db: Db, tenantId: string, name: string, now: number): Promise<void> => {
  try {
    await db
      .insertInto('domains')
      .values({
        name,
        tenant_id: tenantId,
        kind: 'managed',
        verified: 0,
        verification_code: randomBytes(16).toString('hex'),
        federation_url: null,
        created_at: now,
      })
      .execute();
  } catch (err) {
    // Not saying which tenant holds it: that would leak another customer's domains.
    if (isUniqueViolation(err))
      throw new GatehouseError('conflict', { reason: 'domain_taken', domain: name });
    throw err;
  }
};

const getDomain = async (db: Db, tenantId: string, name: string): Promise<Domain> => {
  const r = await db
    .selectFrom('domains')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('name', '=', name)
    .executeTakeFirst();
  if (!r) throw new GatehouseError('not_found', { domain: name });
  return toDomain(r);
};

export const addDomain = async (
  db: Db,
  tenantId: string,
  name: string,
  now: number = Date.now(),
): Promise<Domain> => {
  const tid = parse(TenantId, tenantId);
  const n = parse(DomainName, name);
  await insertDomain(db, tid, n, now);
  return getDomain(db, tid, n);
};

export type ResolveTxt = (hostname: string) => Promise<string[][]>;

export const VerifyDomainOptions = z.object({
  /** The operator vouches for the domain (no DNS lookup). Not offered to tenant admins. */
  force: z.boolean().default(false),
  resolveTxt: z.custom<ResolveTxt>((v) => typeof v === 'function').optional(),
});

/**
 * Marks a domain verified when `gatehouse-verify=<code>` is published as a TXT record at the
 * domain. A missing record is a `conflict` whose detail names the record to publish.
 */
export const verifyDomain = async (
  db: Db,
  tenantId: string,
  name: string,
  options: z.input<typeof VerifyDomainOptions> = {},
): Promise<Domain> => {
  const n = parse(DomainName, name);
  const o = parse(VerifyDomainOptions, options);
  const d = await getDomain(db, tenantId, n);
  if (!d.verified && !o.force) {
    const resolve = o.resolveTxt ?? dnsResolveTxt;
    let found: string[] = [];
    try {
      // A TXT record may be split in several strings; they form one value.
      found = (await resolve(n)).map((chunks) => chunks.join(''));
    } catch (err) {
      found = [];
      const code = (err as { code?: string }).code;
      if (code !== 'ENOTFOUND' && code !== 'ENODATA') {
        throw new GatehouseError('conflict', {
          reason: 'dns_lookup_failed',
          domain: n,
          dnsError: code ?? String(err),
        });
      }
    }
    if (!found.includes(d.txtRecord)) {
      throw new GatehouseError('conflict', { reason: 'txt_record_missing', domain: n, publish: d.txtRecord });
    }
  }
  await db
    .updateTable('domains')
    .set({ verified: 1 })
    .where('tenant_id', '=', tenantId)
    .where('name', '=', n)
    .execute();
  return getDomain(db, tenantId, n);
};

export const listDomains = async (db: Db, tenantId: string): Promise<Domain[]> =>
  (
    await db.selectFrom('domains').selectAll().where('tenant_id', '=', tenantId).orderBy('name').execute()
  ).map(toDomain);

export const DomainKindInput = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('managed') }),
  z.object({
    kind: z.literal('federated'),
    /** Where users of this domain are sent to sign in (their own identity provider). */
    federationUrl: z.url({ protocol: /^https$/ }),
  }),
]);
export type DomainKindInput = z.input<typeof DomainKindInput>;

export const setDomainKind = async (
  db: Db,
  tenantId: string,
  name: string,
  input: DomainKindInput,
): Promise<Domain> => {
  const n = parse(DomainName, name);
  const k = parse(DomainKindInput, input);
  await getDomain(db, tenantId, n);
  await db
    .updateTable('domains')
    .set({ kind: k.kind, federation_url: k.kind === 'federated' ? k.federationUrl : null })
    .where('tenant_id', '=', tenantId)
    .where('name', '=', n)
    .execute();
  return getDomain(db, tenantId, n);
};

/** The tenant's verified federated domains and where each signs in (home realm discovery). */
export const listFederatedRedirects = async (db: Db, tenantId: string): Promise<Map<string, string>> => {
  const rows = await db
    .selectFrom('domains')
    .select(['name', 'federation_url'])
    .where('tenant_id', '=', tenantId)
    .where('kind', '=', 'federated')
    .where('verified', '=', 1)
    .execute();
  return new Map(rows.flatMap((d) => (d.federation_url ? [[d.name, d.federation_url]] : [])));
};
