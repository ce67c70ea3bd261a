/**
 * Which cloud processes are alive, for smart lockout's in-flight counts (lockout/rules.ts): each
 * process answers on a NATS subject named by its incarnation (a random id per start) until it
 * leaves NATS. "No responders" means no process holds that subscription: it crashed, or it lost
 * NATS. A lost connection comes back within the client's reconnect wait, so a process counts as
 * gone only after NATS has said so for GONE_AFTER_MS; a timeout or any other error says nothing.
 */
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import { token } from './balance.ts';

const GONE_AFTER_MS = 3_000;
const ASK_TIMEOUT_MS = 250;
/** Processes being watched at once (a few per restart of a node); the oldest first goes. */
const MAX_WATCHED = 1_000;

export interface Liveness {
  /** True once the process of `incarnation` has been unreachable for GONE_AFTER_MS. */
  isGone(incarnation: string): Promise<boolean>;
}

const subjectOf = (clusterId: string, incarnation: string) =>
  `gatehouse.nodes.alive.${clusterId}.${token(incarnation)}`;

export const startLiveness = (
  nc: NatsConnection,
  o: { clusterId: string; incarnation: string; log: Logger },
): Liveness => {
  nc.subscribe(subjectOf(o.clusterId, o.incarnation), {
    callback: (err, m) => {
      // A message without a reply subject, or a connection closing: nothing to answer, nothing to throw.
      try {
        if (!err) m.respond();
      } catch {}
    },
  });
  const silentSince = new Map<string, number>();
  return {
    async isGone(incarnation) {
      try {
        await nc.request(subjectOf(o.clusterId, incarnation), undefined, { timeout: ASK_TIMEOUT_MS });
        silentSince.delete(incarnation);
        return false;
      } catch (err) {
        if ((err as { code?: string }).code !== '503') return false;
        const since = silentSince.get(incarnation) ?? Date.now();
        if (!silentSince.has(incarnation)) {
          if (silentSince.size >= MAX_WATCHED) silentSince.delete(silentSince.keys().next().value!);
          silentSince.set(incarnation, since);
        }
        const gone = Date.now() - since >= GONE_AFTER_MS;
        if (gone) o.log.info({ incarnation }, 'a cloud process is gone: its lockout counts are released');
        return gone;
      }
    },
  };
};
