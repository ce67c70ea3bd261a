/**
 * Which refusals by the cloud are permanent. Reconnecting cannot help when the cloud refuses the
 * certificate (the agent was deleted, its certificate replaced, expired or not issued by the
 * tenant CA) or does not speak this agent's protocol: the agent then stops with its own exit code
 * so a service manager can tell "re-register or upgrade me" from a crash.
 *
 * How the cloud says so (apps/cloud/src/gateway/): a refused upgrade is an HTTP 401 whose JSON body
 * is `{ error: 'certificate_rejected' }`; a connection whose agent is deleted meanwhile gets an
 * error frame certificate_rejected, then close 1008; a hello of another protocol gets an error
 * frame protocol_error, then close 1002, before any welcome. Anything else (a 5xx, a proxy's
 * answer, a dropped connection, a TLS failure) may pass, and is retried with backoff.
 */
import { GatehouseError } from '@gatehouse/protocol';

/** `gatehouse-agent run` exit codes beyond main.ts's 0/1/2 (docs/agent.md lists them all). */
export const EXIT_CERTIFICATE_REFUSED = 3;
export const EXIT_PROTOCOL_REFUSED = 4;

/** A permanent refusal: a GatehouseError of code certificate_rejected or protocol_error. */
export type Refusal = GatehouseError;

export const refusalExitCode = (e: GatehouseError): number | undefined =>
  e.code === 'certificate_rejected'
    ? EXIT_CERTIFICATE_REFUSED
    : e.code === 'protocol_error'
      ? EXIT_PROTOCOL_REFUSED
      : undefined;

const certificateRefused = (cloudSaid: string) =>
  new GatehouseError('certificate_rejected', {
    cloudSaid,
    action: 'the agent was deleted or its certificate is no longer valid: register it again',
  });

/** A refused WebSocket upgrade: permanent only when the cloud's own catalog answer says so. */
export const refusalFromUpgrade = (status: number, body: string): Refusal | null => {
  if (status !== 401) return null;
  try {
    const json = JSON.parse(body) as { error?: unknown; message?: unknown };
    if (json.error !== 'certificate_rejected') return null;
    return certificateRefused(String(json.message ?? 'certificate rejected'));
  } catch {
    return null;
  }
};

/** An error frame: certificate_rejected always; protocol_error only before the welcome (the hello
 * itself was refused). After the welcome, protocol_error is about one frame and only logged. */
export const refusalFromErrorFrame = (code: string, message: string, welcomed: boolean): Refusal | null => {
  if (code === 'certificate_rejected') return certificateRefused(message);
  if (code === 'protocol_error' && !welcomed)
    return new GatehouseError('protocol_error', {
      cloudSaid: message,
      action: 'this agent and the cloud speak different protocol versions: upgrade the agent',
    });
  return null;
};
