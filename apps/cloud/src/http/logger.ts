/**
 * The cloud's logger. Secrets never reach a log line: request logs carry the path and the names of
 * query parameters but not the values of sensitive ones, and any field named like a secret is
 * redacted wherever a part of the cloud logs an object.
 */
import { type DestinationStream, type Logger, pino } from 'pino';
import type { CloudConfig } from '../config.ts';

/** Values never to log. In a URL they are query parameters; in a logged object, field names. */
const SECRET_FIELDS = [
  'password',
  'client_secret',
  'code_verifier',
  'refresh_token',
  'access_token',
  'id_token',
  'id_token_hint',
  'assertion',
  'device_code',
  'registration_token',
];
/** `code` and `token` are secrets only as OAuth parameters: as object fields they are a WebSocket
 * close code, an error code, a token's kind. Redacting them by name everywhere hid every agent
 * disconnect's close code, so they are redacted in URLs and at the request body's own paths. */
const SENSITIVE = [...SECRET_FIELDS, 'code', 'token'];
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
  ...SECRET_FIELDS.flatMap((k) => [k, `*.${k}`]),
  'body.code',
  'body.token',
  'req.body.code',
  'req.body.token',
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
