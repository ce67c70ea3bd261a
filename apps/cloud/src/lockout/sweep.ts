/**
 * The sweep that keeps smart lockout's tables bounded whatever names an attacker sends.
 */
import type { Db } from '../db/index.ts';
import {
  deleteExpiredBadPasswords,
  deleteLapsedUnknownCounters,
  evictUnknownUpTo,
  tenantsOverUnknownCap,
  unknownCutoff,
} from '../store/lockout.ts';
import { COUNTER_LAPSE_MS, UNKNOWN_PREFIX } from './rules.ts';

/**
 * Random names must not grow the tables without bound. A lapsed counter reads as empty for every
 * name, so deleting one of an unknown name changes no answer. The cap is the backstop against a
 * flood inside one lapse period: evicting a name's counter early is the one thing that could
 * tell it from a real user's, and it takes more than the cap of fresh names in between.
 */
export const pruneLockout = async (db: Db, t: number, maxUnknown: number): Promise<void> => {
  await deleteExpiredBadPasswords(db, t);
  await deleteLapsedUnknownCounters(db, UNKNOWN_PREFIX, t - COUNTER_LAPSE_MS, t);
  const crowded = await tenantsOverUnknownCap(db, UNKNOWN_PREFIX, maxUnknown);
  for (const { tenant_id } of crowded) {
    const cutoff = await unknownCutoff(db, tenant_id, UNKNOWN_PREFIX, maxUnknown);
    if (cutoff === undefined) continue;
    await evictUnknownUpTo(db, tenant_id, UNKNOWN_PREFIX, cutoff);
  }
};
