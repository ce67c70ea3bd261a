/** The agent limit case on PostgreSQL (the case: agent-limit-fixtures.ts). */
import { after } from 'node:test';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { agentLimitTest } from './agent-limit-fixtures.ts';

const pg = await createTempDatabase();
after(() => pg?.drop());

agentLimitTest('postgres', pg?.url ?? null);
