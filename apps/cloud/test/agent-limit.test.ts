/** The agent limit case on SQLite (the case: agent-limit-fixtures.ts). */
import { agentLimitTest } from './agent-limit-fixtures.ts';

agentLimitTest('sqlite');
