/** Retention of the sign-in and audit logs on PostgreSQL (the case: signin-export-retention-fixtures.ts). */
import { after } from 'node:test';
import { createTempDatabase } from '../../../test/harness/postgres.ts';
import { retentionTest } from './signin-export-retention-fixtures.ts';

const pg = await createTempDatabase();
after(() => pg?.drop());

retentionTest('postgres', pg?.url ?? null);
