/**
 * The sweep that keeps smart lockout's tables bounded whatever names an attacker sends.
 */
import { type Kysely, sql } from 'kysely';
import type { Database } from '../db/index.ts';
import { COUNTER_LAPSE_MS, UNKNOWN_PREFIX } from './rules.ts';

const unknown = sql<boolean>`user_id like ${`${UNKNOWN_PREFIX}%`}`;

/**
 * Random names must not grow the tables without bound. A lapsed counter reads as empty for every
 * name, so deleting one of an unknown name changes no answer. The cap is the backstop against a
 * flood inside one lapse period: evicting a name's counter early is the one thing that could
 * tell it from a real user's, and it takes more than the cap of fresh names in between.
 */
export const pruneLockout = async (db: Kysely<Database>, t: number, maxUnknown: number): Promise<void> => {
  await db.deleteFrom('lockout_bad_passwords').where('expires_at', '<=', t).execute();
  await db
    .deleteFrom('lockout_counters')
    .where(unknown)
    .where('updated_at', '<', t - COUNTER_LAPSE_MS)
    .where('locked_until', '<=', t)
    .where('in_flight_until', '<=', t)
    .execute();
  const crowded = await db
    .selectFrom('lockout_counters')
    .select(['tenant_id', (eb) => eb.fn.countAll<number>().as('n')])
    .where(unknown)
    .groupBy('tenant_id')
    .having((eb) => eb.fn.countAll(), '>', maxUnknown)
    .execute();
  for (const { tenant_id } of crowded) {
    const cutoff = await db
      .selectFrom('lockout_counters')
      .select('updated_at')
      .where('tenant_id', '=', tenant_id)
      .where(unknown)
      .orderBy('updated_at', 'desc')
      .offset(maxUnknown)
      .limit(1)
      .executeTakeFirst();
    if (!cutoff) continue;
    await db
      .deleteFrom('lockout_counters')
      .where('tenant_id', '=', tenant_id)
      .where(unknown)
      .where('updated_at', '<=', cutoff.updated_at)
      .execute();
    await db
      .deleteFrom('lockout_bad_passwords')
      .where('tenant_id', '=', tenant_id)
      .where(unknown)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('lockout_counters as c')
              .select('c.user_id')
              .whereRef('c.tenant_id', '=', 'lockout_bad_passwords.tenant_id')
              .whereRef('c.user_id', '=', 'lockout_bad_passwords.user_id'),
          ),
        ),
      )
      .execute();
  }
};
