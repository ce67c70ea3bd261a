/**
 * The cloud's logger. Secrets never reach a log line: request logs carry the path and the names of
 * query parameters but not the values of sensitive ones, and any field named like a secret is
 * redacted wherever a part of the cloud logs an object.
 */
import { type DestinationStream, type Logger, pino } from 'pino';
import type { CloudConfig } from '../config.ts';

const SENSITIVE = [
  'password',
  'client_secret',
  'code',
  'code_verifier',
  'refresh_token',
  'access_token',
  'id_token',
  'id_token_hint',
  'token',
  'assertion',
  'device_code',
  'registration_token',
];
const SENSITIVE_SET = new Set(SENSITIVE);

/** The URL with values of sensitive query parameters replaced. */
export const redactUrl = (url: string | undefined): string | undefined => {
  if (!url) return url;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  for (const key of new Set(params.keys())) {
    if (SENSITIVE_SET.has(key.toLowerCase())) params.set(key, 'redacted');
  }
  return `${url.slice(0, q)}?${params.toString()}`;
};

const REDACT_PATHS = [
  ...SENSITIVE.flatMap((k) => [k, `*.${k}`]),
  'passwordHash',
  '*.passwordHash',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
];

export const createLogger = (
  config: Pick<CloudConfig, 'logLevel'>,
  destination?: DestinationStream,
): Logger =>
  pino(
    {
      level: config.logLevel,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        // Replaces fastify's default request serializer (which logs the raw URL).
        req: (req: { method?: string; url?: string; ip?: string; host?: string }) => ({
          method: req.method,
          url: redactUrl(req.url),
          host: req.host,
          remoteAddress: req.ip,
        }),
      },
    },
    destination,
  );
