/**
 * `gatehouse backup` and `gatehouse restore` (embedded shape, SQLite). The scale-out shape's
 * database is PostgreSQL's to back up: pg_dump and pg_restore, as docs/operations.md describes.
 */
import { resolve } from 'node:path';
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';
import { backupSqlite, restoreSqlite } from '../store/backup.ts';
import { type Command, command, str } from './shared.ts';

const dir = z
  .string({ error: 'is required' })
  .min(1)
  .transform((p) => resolve(p));

const sqliteFileOf = (url: string): string | undefined =>
  /^postgres(ql)?:\/\//.test(url) ? undefined : url.replace(/^sqlite:/, '');

export const backupCommands: Record<string, Command> = {
  backup: command({
    summary: 'copies the embedded database (online), secret.key and the service TLS into a new directory',
    usage: '--out DIR',
    options: { out: str },
    schema: z.object({ out: dir }),
    async run(env, a) {
      const dbFile = sqliteFileOf(env.config.database);
      if (dbFile === undefined)
        throw new GatehouseError('conflict', {
          database: env.state.database,
          reason:
            'gatehouse backup copies the embedded SQLite database; back up PostgreSQL with pg_dump (docs/operations.md, "Backup")',
        });
      const m = await backupSqlite({
        dbFile,
        dataDir: env.config.dataDir,
        keyConfigured: env.config.secretKey !== undefined,
        out: a.out,
      });
      const keyNote =
        m.secretKey === 'secret.key'
          ? 'secret key: in the backup (secret.key): keep the backup as safe as the cloud'
          : 'secret key: NOT in the backup (it comes from GATEHOUSE_CLOUD_SECRET_KEY): keep it with the backup';
      return {
        json: { out: a.out, ...m },
        text: [
          `backed up to ${a.out} (${m.pages} pages, ${Object.keys(m.files).length} files)`,
          keyNote,
          m.tls
            ? 'service TLS: in the backup (tls/)'
            : 'service TLS: none generated in DATA_DIR/tls (keep your tlsCertFile and tlsKeyFile yourself)',
        ].join('\n'),
      };
    },
  }),

  restore: command({
    summary: 'a backup into a new, empty data directory, after checking its key',
    usage: '--from DIR --data-dir NEW',
    withoutState: true,
    options: { from: str, 'data-dir': str },
    schema: z.object({ from: dir, 'data-dir': dir }),
    async run(env, a) {
      const m = await restoreSqlite({
        from: a.from,
        dataDir: a['data-dir'],
        configuredKey: env.config.secretKey,
      });
      return {
        json: { dataDir: a['data-dir'], ...m },
        text: [
          `restored ${a.from} (backed up ${m.createdAt}) into ${a['data-dir']}; the key opens its database`,
          `start the cloud with GATEHOUSE_CLOUD_DATA_DIR=${a['data-dir']}${m.secretKey === 'configured' ? ' and the same GATEHOUSE_CLOUD_SECRET_KEY' : ''}`,
        ].join('\n'),
      };
    },
  }),
};
