/** A real cloud state (SQLite file in a temp dir) for repository, sign-in and CLI tests. */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { openState } from '../src/bootstrap.ts';
import { loadCloudConfig } from '../src/config.ts';
import type { CloudContext } from '../src/context.ts';
import type { CleartextValidation, Dispatcher, ValidationAnswer } from '../src/signin/types.ts';

export interface TestState {
  ctx: CloudContext;
  dir: string;
  /** Every byte of the database files (main file and WAL), for canary greps. */
  dbBytes(): Buffer;
  cleanup(): Promise<void>;
}

/** A dispatcher seam for tests: answers with whatever `answer` returns and records the requests. */
export const scriptedDispatcher = (
  answer: (req: CleartextValidation) => ValidationAnswer | Promise<ValidationAnswer>,
): Dispatcher & { requests: CleartextValidation[] } => {
  const requests: CleartextValidation[] = [];
  return {
    requests,
    async validate(req) {
      requests.push(req);
      return answer(req);
    },
    activeAgentCount: async () => 1,
  };
};

export const openTestState = async (overrides: Record<string, unknown> = {}): Promise<TestState> => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-dir-'));
  const config = loadCloudConfig({}, { dataDir: dir, ...overrides });
  const { db, secrets } = await openState(config);
  const ctx: CloudContext = {
    config,
    db,
    secrets,
    log: pino({ level: 'silent' }),
    tls: { caCert: '', cert: '', key: '' },
    now: () => Date.now(),
  };
  return {
    ctx,
    dir,
    dbBytes: () =>
      Buffer.concat(
        readdirSync(dir)
          .filter((f) => f.startsWith('gatehouse.db'))
          .map((f) => readFileSync(join(dir, f))),
      ),
    async cleanup() {
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
};
