/** How a node, and the operator CLI, join NATS: TLS with a pinned CA (never unverified), an
 * optional client certificate, an optional user with its password read from a file. */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'nats';

export interface NatsSecurity {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  user?: string;
  passwordFile?: string;
}

export const natsConnectOptions = (
  natsUrl: string,
  name: string,
  sec: NatsSecurity = {},
): ConnectionOptions => ({
  servers: natsUrl,
  name,
  ...(sec.caFile
    ? {
        tls: {
          caFile: sec.caFile,
          ...(sec.certFile ? { certFile: sec.certFile, keyFile: sec.keyFile } : {}),
        },
      }
    : {}),
  ...(sec.user && sec.passwordFile
    ? { user: sec.user, pass: readFileSync(sec.passwordFile, 'utf8').replace(/\r?\n$/, '') }
    : {}),
});
