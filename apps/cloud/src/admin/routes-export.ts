/**
 * Admin API: the sign-in log exported as CSV or JSON lines, streamed a page at a time (a month of
 * a busy tenant's log never sits in memory), with the list route's filters. CSV cells that a
 * spreadsheet would run as a formula (=, +, -, @, tab, carriage return) are prefixed with a
 * quote: user names come from the directory and error codes from the agent, so a cell is never
 * trusted not to start one.
 */
import { Readable } from 'node:stream';
import { z } from 'zod';
import { iterateSignIns, type SignInEntry } from '../store/sign-ins.ts';
import { type RouteDef, route } from './api.ts';
import type { AdminDeps } from './deps.ts';

const Int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** The list route's filters (GET /signins), without its paging. */
export const SignInFilters = z.object({
  upn: z.string().trim().max(256).optional(),
  outcome: z.string().max(64).optional(),
  result: z.enum(['success', 'failure']).optional(),
  agentId: z.string().max(128).optional(),
  from: Int(0, Number.MAX_SAFE_INTEGER).optional(),
  to: Int(0, Number.MAX_SAFE_INTEGER).optional(),
});

const COLUMNS = [
  'id',
  'at',
  'requestId',
  'upn',
  'method',
  'outcome',
  'success',
  'clientId',
  'clientIp',
  'agentId',
  'server',
  'directoryCode',
  'agentMs',
  'directoryMs',
  'totalMs',
] as const;

type Exported = Record<(typeof COLUMNS)[number], string | number | boolean | null>;

const exported = ({ userId: _, ...e }: SignInEntry): Exported => ({
  ...e,
  at: new Date(e.at).toISOString(),
  success: e.outcome === 'success',
});

/** OWASP's CSV injection rule: a leading formula character is defused with a quote, and the cell quoted. */
export const csvCell = (v: string | number | boolean | null): string => {
  if (v === null) return '';
  if (typeof v !== 'string') return String(v);
  const formula = /^[=+\-@\t\r]/.test(v);
  const s = formula ? `'${v}` : v;
  return formula || /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

async function* csv(rows: AsyncIterable<SignInEntry>) {
  yield `${COLUMNS.join(',')}\r\n`;
  for await (const r of rows) {
    const e = exported(r);
    yield `${COLUMNS.map((c) => csvCell(e[c])).join(',')}\r\n`;
  }
}

async function* jsonl(rows: AsyncIterable<SignInEntry>) {
  for await (const r of rows) yield `${JSON.stringify(exported(r))}\n`;
}

const FORMATS = {
  csv: { type: 'text/csv; charset=utf-8', produces: 'text/csv', lines: csv },
  jsonl: { type: 'application/x-ndjson; charset=utf-8', produces: 'application/x-ndjson', lines: jsonl },
} as const;

export const exportRoutes = ({ ctx }: AdminDeps): RouteDef[] =>
  (Object.keys(FORMATS) as (keyof typeof FORMATS)[]).map((format) =>
    route({
      method: 'GET',
      path: `/signins/export/${format}`,
      summary: `Sign-in log as ${format === 'csv' ? 'CSV' : 'JSON lines'}, newest first, streamed; same filters as /signins`,
      permission: 'read',
      query: SignInFilters,
      produces: FORMATS[format].produces,
      handler: async ({ caller, query, reply }) => {
        const stamp = new Date(ctx.now()).toISOString().slice(0, 10);
        return reply
          .header('content-type', FORMATS[format].type)
          .header(
            'content-disposition',
            `attachment; filename="signins-${caller.tenantId}-${stamp}.${format}"`,
          )
          .send(Readable.from(FORMATS[format].lines(iterateSignIns(ctx.db, caller.tenantId, query))));
      },
    }),
  );
