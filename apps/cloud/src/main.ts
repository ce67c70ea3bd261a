/**
 * `npm run cloud`: runs the cloud from GATEHOUSE_CLOUD_* settings until SIGINT or SIGTERM, then stops
 * gracefully: no new connections, in-flight sign-ins finish (up to drainMs), agents are let go.
 * Errors nothing caught follow process-policy.ts: a rejection is logged and counted, an uncaught
 * exception drains the process the same way and exits 1.
 */
import { isGatehouseError } from '@gatehouse/protocol';
import { installProcessPolicy } from './process-policy.ts';
import { startCloud } from './server.ts';

try {
  const cloud = await startCloud();
  process.stdout.write(`Gatehouse cloud listening on ${cloud.url}\nAgent gateway on ${cloud.gatewayUrl}\n`);
  let stopping = false;
  const shutdown = (signal: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    cloud.ctx.log.info({ signal }, 'stopping: finishing in-flight sign-ins');
    // Whatever is still running past the drain budget is cut off (the balancer has moved on).
    setTimeout(() => process.exit(1), cloud.ctx.config.drainMs + 5_000).unref();
    cloud.stop().then(
      () => process.exit(code),
      () => process.exit(1),
    );
  };
  installProcessPolicy({ log: cloud.ctx.log, onFatal: () => shutdown('uncaughtException', 1) });
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
} catch (err) {
  if (isGatehouseError(err)) {
    process.stderr.write(`gatehouse: ${err.message}\n${JSON.stringify(err.detail ?? {}, null, 2)}\n`);
  } else {
    process.stderr.write(
      `gatehouse: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  process.exit(1);
}
