/** Deadlines around ldapts calls: every directory operation ends in time, whatever the server does. */
import type { Client } from 'ldapts';
import { DirectoryTimeoutError } from './outcome.ts';

/** Races `p` against `ms`; on timeout `onTimeout` runs and, should `p` still resolve, `onLate` gets it. */
export const withTimeout = async <T>(
  p: Promise<T>,
  ms: number,
  what: string,
  onTimeout: () => void,
  onLate?: (v: T) => void,
): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => {
        timedOut = true;
        onTimeout();
        reject(new DirectoryTimeoutError(what));
      },
      Math.max(1, ms),
    );
  });
  if (onLate) void p.then((v) => timedOut && onLate(v)).catch(() => {});
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
};

export const close = (c?: Client) => void c?.unbind().catch(() => {});
