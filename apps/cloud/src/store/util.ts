/** Small helpers shared by the repositories: input validation and constraint errors as catalog codes. */
import { GatehouseError } from '@gatehouse/protocol';
import { z } from 'zod';

/** Parses `input` with `schema`; a failure is `validation_failed` with one entry per issue. */
export const parse = <S extends z.ZodType>(schema: S, input: unknown): z.output<S> => {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  throw new GatehouseError(
    'validation_failed',
    r.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
  );
};

/** True for a unique or primary-key violation from node:sqlite or pg. */
export const isUniqueViolation = (err: unknown): boolean => {
  const e = err as { code?: unknown; errcode?: unknown; message?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  if (e.code === '23505') return true;
  // SQLITE_CONSTRAINT_UNIQUE (2067) and SQLITE_CONSTRAINT_PRIMARYKEY (1555).
  if (e.errcode === 2067 || e.errcode === 1555) return true;
  return typeof e.message === 'string' && /UNIQUE constraint failed/.test(e.message);
};

/** A DNS domain name, lower-cased: letter/digit/hyphen labels, at least two of them. */
export const DomainName = z
  .string()
  .trim()
  .max(253)
  .regex(
    /^([a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/,
    'a domain name such as contoso.com',
  )
  .transform((s) => s.toLowerCase());

/** A user principal name, lower-cased (the sign-in name). */
export const Upn = z
  .string()
  .trim()
  .min(3)
  .max(256)
  .regex(/^[^@\s]+@[^@\s]+\.[^@\s]+$/, 'a user principal name such as alice@contoso.com')
  .transform((s) => s.toLowerCase());

/** The domain part of a sign-in name (after the last @), lower case; '' when there is none. */
export const domainOf = (name: string): string => {
  const at = name.lastIndexOf('@');
  return at < 0
    ? ''
    : name
        .slice(at + 1)
        .trim()
        .toLowerCase();
};

export const jsonStringArray = (v: string): string[] => {
  try {
    const a = JSON.parse(v) as unknown;
    return Array.isArray(a) ? a.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
};
