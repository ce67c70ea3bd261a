/**
 * `gatehouse init`: explicit first-time setup, for operators who set a cloud up before starting
 * it (or set up a PostgreSQL database for the scale-out shape). The cloud's first start does the
 * same; every other command refuses to create state.
 */
import { z } from 'zod';
import { type Command, command } from './shared.ts';

export const initCommands: Record<string, Command> = {
  init: command({
    summary: 'first-time setup: data directory, database, secret.key and its check value',
    usage: '',
    createsState: true,
    options: {},
    schema: z.object({}),
    // The work is done by opening the state with createsState; this reports what it found.
    async run(env) {
      const { database, key, checkWritten } = env.state;
      return {
        json: { dataDir: env.config.dataDir, database, secretKey: key, setUp: checkWritten },
        text: [
          checkWritten ? 'set up' : 'already set up; nothing changed',
          `data directory: ${env.config.dataDir}`,
          `database: ${database}`,
          `secret key: ${key}`,
        ].join('\n'),
      };
    },
  }),
};
