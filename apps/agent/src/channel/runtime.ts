/**
 * What outlives one connection: the agent's state (replaced on renewal), the directory, the
 * status file, and the requests being answered. The supervisor owns it; connections borrow it.
 */
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.ts';
import type { Directory } from '../directory/index.ts';
import { type AgentState, writeStatus } from '../state.ts';

/** Requests being answered; `idle()` resolves when none are left, so shutdown awaits, not polls. */
export class InFlight {
  #count = 0;
  #waiters: (() => void)[] = [];

  get count(): number {
    return this.#count;
  }

  track<T>(work: Promise<T>): Promise<T> {
    this.#count++;
    return work.finally(() => {
      if (--this.#count === 0) for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  idle(): Promise<void> {
    return this.#count === 0 ? Promise.resolve() : new Promise((r) => this.#waiters.push(r));
  }
}

export class AgentRuntime {
  state: AgentState;
  /** The HPKE key before the last renewal: requests sealed to it may still be on the way. */
  previousHpke: Uint8Array | undefined;
  connected = false;
  lastHeartbeatAt: number | undefined;
  heartbeatMs: number | undefined;
  readonly inFlight = new InFlight();

  readonly config: AgentConfig;
  readonly log: Logger;
  readonly directory: Directory;

  constructor(config: AgentConfig, log: Logger, directory: Directory, state: AgentState) {
    this.config = config;
    this.log = log;
    this.directory = directory;
    this.state = state;
  }

  /** The file `gatehouse-agent status` reads. */
  writeStatus(): void {
    writeStatus(this.config.stateDir, {
      pid: process.pid,
      connected: this.connected,
      agentId: this.state.agentId,
      lastHeartbeatAt: this.lastHeartbeatAt,
      heartbeatMs: this.heartbeatMs,
      directory: this.directory.health,
      updatedAt: Date.now(),
    });
  }
}
