/**
 * The addresses the running cloud answers on (its public URL and the agents' gateway URL), as the
 * cloud itself last started with them. The CLI runs in another environment (an operator's shell,
 * not the unit's), so what it prints as an issuer or a registration command comes from here, not
 * from its own GATEHOUSE_CLOUD_* variables, which may say nothing about the port the cloud really took.
 */
import type { Db } from '../db/index.ts';

export interface ServiceUrls {
  publicUrl: string;
  gatewayUrl: string;
  /** When a cloud last wrote them; null when no cloud has started on this database yet. */
  recordedAt: number | null;
}

const NAMES = ['public_url', 'gateway_url'] as const;

/** Written by every start, once its ports are bound (the last node to start wins; they agree). */
export const recordServiceUrls = async (
  db: Db,
  urls: { publicUrl: string; gatewayUrl: string },
  now: number,
): Promise<void> => {
  const rows = [
    { name: 'public_url', value: urls.publicUrl, updated_at: now },
    { name: 'gateway_url', value: urls.gatewayUrl, updated_at: now },
  ];
  await db
    .insertInto('service_settings')
    .values(rows)
    .onConflict((oc) =>
      oc.column('name').doUpdateSet((eb) => ({
        value: eb.ref('excluded.value'),
        updated_at: eb.ref('excluded.updated_at'),
      })),
    )
    .execute();
};

/** The URLs the cloud recorded, or `fallback` (the caller's configuration) for what it has not. */
export const serviceUrls = async (
  db: Db,
  fallback: { publicUrl: string; gatewayUrl: string },
): Promise<ServiceUrls> => {
  const rows = await db
    .selectFrom('service_settings')
    .select(['name', 'value', 'updated_at'])
    .where('name', 'in', [...NAMES])
    .execute();
  const of = (n: (typeof NAMES)[number]) => rows.find((r) => r.name === n);
  const at = rows.map((r) => Number(r.updated_at));
  return {
    publicUrl: of('public_url')?.value ?? fallback.publicUrl,
    gatewayUrl: of('gateway_url')?.value ?? fallback.gatewayUrl,
    recordedAt: at.length ? Math.max(...at) : null,
  };
};
