/**
 * The key check value: a constant sealed once with the secret key the database was set up with.
 * Every entry point opens it before it writes or serves anything, so a process holding another
 * key (a CLI run without the nodes' GATEHOUSE_CLOUD_SECRET_KEY, a node started with a wrong one) is
 * refused at once instead of sealing data nobody else can open, or answering 500s.
 *
 * It is read before migrations run (a wrong key must not even upgrade the schema), so the table
 * may not exist yet: the reader looks first.
 */
import type { Kysely } from 'kysely';
import type { Db } from '../db/index.ts';
import type { SecretBox } from '../secrets.ts';

const ROW_ID = 'secret-key';
const CONTEXT = 'key-check';
const PLAINTEXT = 'gatehouse secret key check v1';

export interface StateProbe {
  /** The sealed check value, or null when the database has none (new, or from before checks). */
  sealed: string | null;
  /** Whether the schema exists at all (a database set up by an older version has tenants). */
  hasSchema: boolean;
}

/** What the database holds, read without writing anything (not even a migration). */
export const probeState = async (db: Kysely<unknown>): Promise<StateProbe> => {
  const tables = new Set((await db.introspection.getTables()).map((t) => t.name));
  if (!tables.has('key_check')) return { sealed: null, hasSchema: tables.has('tenants') };
  const row = await (db as unknown as Db)
    .selectFrom('key_check')
    .select('sealed')
    .where('id', '=', ROW_ID)
    .executeTakeFirst();
  return { sealed: row?.sealed ?? null, hasSchema: true };
};

/** Whether `secrets` holds the key that sealed the check value. */
export const keyOpensCheck = (secrets: SecretBox, sealed: string): boolean => {
  try {
    return secrets.open(sealed, CONTEXT) === PLAINTEXT;
  } catch {
    return false;
  }
};

/**
 * Writes the check value unless one exists (two nodes may set up the same database at once),
 * then returns the one stored, which the caller verifies: the loser of a race with another key
 * is refused like any other wrong key.
 */
export const writeKeyCheck = async (db: Db, secrets: SecretBox, now: number): Promise<string> => {
  await db
    .insertInto('key_check')
    .values({ id: ROW_ID, sealed: secrets.seal(PLAINTEXT, CONTEXT), created_at: now })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  const row = await db
    .selectFrom('key_check')
    .select('sealed')
    .where('id', '=', ROW_ID)
    .executeTakeFirstOrThrow();
  return row.sealed;
};
