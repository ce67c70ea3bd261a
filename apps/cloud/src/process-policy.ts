/**
 * What the cloud process does with an error nothing caught (docs/security.md, "Process failure
 * policy"). One process serves every tenant, so the default (Node exits) turns one request's or
 * one agent connection's bug into an outage for all of them; issue 10 was exactly that.
 *
 * - An unhandled rejection is logged with its stack, counted, and the process keeps serving. A
 *   rejection only ever surfaces at an await, after the code that made it has unwound: no
 *   synchronous update is left half done, and the request or connection it belonged to has its
 *   own deadline or close to end it.
 * - An uncaught exception is logged, counted, and the process drains and exits non-zero (the
 *   supervisor or the balancer replaces it). A synchronous throw can stop in the middle of a state
 *   change, and Node documents that resuming after one is unsafe; for an identity service a wrong
 *   answer is worse than a restart. The agent channel contains every handler itself
 *   (gateway/connection.ts), so no agent can reach this path.
 */

import type { Logger } from 'pino';
import { Counter } from 'prom-client';

export type FailureKind = 'unhandled_rejection' | 'uncaught_exception';

/** On the default registry, so /metrics shows it. */
export const processFailures = new Counter({
  name: 'gatehouse_process_failures_total',
  help: 'Errors that reached the process (unhandled rejections, uncaught exceptions)',
  labelNames: ['kind'] as const,
});

export interface ProcessPolicyOptions {
  log: Logger;
  /** Called once, at the first uncaught exception: drain and exit with a non-zero status. */
  onFatal: (err: unknown) => void;
  proc?: NodeJS.Process;
}

/** Installs the policy; returns a function that removes it (tests). */
export const installProcessPolicy = (o: ProcessPolicyOptions): (() => void) => {
  const proc = o.proc ?? process;
  let fatal = false;
  const onRejection = (reason: unknown) => {
    processFailures.inc({ kind: 'unhandled_rejection' });
    o.log.error(
      { err: reason, kind: 'unhandled_rejection', policy: 'keep serving' },
      'unhandled promise rejection (a bug: every promise should be awaited or caught)',
    );
  };
  const onException = (err: unknown, origin: string) => {
    processFailures.inc({ kind: 'uncaught_exception' });
    o.log.fatal(
      { err, kind: 'uncaught_exception', origin, policy: fatal ? 'already stopping' : 'drain and exit' },
      'uncaught exception: draining and exiting',
    );
    if (fatal) return;
    fatal = true;
    o.onFatal(err);
  };
  proc.on('unhandledRejection', onRejection);
  proc.on('uncaughtException', onException);
  return () => {
    proc.off('unhandledRejection', onRejection);
    proc.off('uncaughtException', onException);
  };
};
