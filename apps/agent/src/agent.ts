/**
 * The `run` command: the agent's runtime (state, directory, status file) and its supervisor, which
 * keeps one outbound mutual-TLS WebSocket to the gateway (channel/). The agent opens no listening
 * socket; `status` reads the file written on every heartbeat.
 */
import type { Logger } from 'pino';
import type { Backoff } from './backoff.ts';
import { AgentRuntime } from './channel/runtime.ts';
import { type RunOutcome, Supervisor } from './channel/supervisor.ts';
import type { AgentConfig } from './config.ts';
import { Directory } from './directory/index.ts';
import { loadAgentState } from './state.ts';

export { type RunOutcome, renewAt } from './channel/supervisor.ts';

export interface RunOptions {
  config: AgentConfig;
  log: Logger;
  /** Aborting it stops the agent gracefully (in-flight requests finish first). */
  signal: AbortSignal;
  backoff?: Backoff;
}

/** Runs until the signal aborts ('stopped') or the cloud refuses the agent for good ('refused'). */
export const runAgent = async ({ config, log, signal, backoff }: RunOptions): Promise<RunOutcome> => {
  const state = loadAgentState(config.stateDir);
  const directory = new Directory(config.directory, { log });
  const health = await directory.probe();
  log.info({ directory: health, agentId: state.agentId }, 'agent starting');
  const rt = new AgentRuntime(config, log, directory, state);
  try {
    return await new Supervisor(rt, signal, backoff).run();
  } finally {
    await directory.close();
    rt.connected = false;
    rt.writeStatus();
    log.info('stopped');
  }
};
