// The container's health check: GET /readyz on the metrics listener, over HTTPS, trusting only the
// service CA in the data directory (never an unverified connection). Exit 0 when ready, 1 otherwise.
// Its own settings are not GATEHOUSE_CLOUD_* variables: the cloud refuses names it does not know.
// HEALTHCHECK_CA_FILE and HEALTHCHECK_SERVERNAME: for a service certificate given in configuration.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';

const dataDir = process.env.GATEHOUSE_CLOUD_DATA_DIR ?? '/var/lib/gatehouse';
const port = Number(process.env.GATEHOUSE_CLOUD_METRICS_PORT ?? 9464);
let ca;
try {
  ca = readFileSync(process.env.HEALTHCHECK_CA_FILE ?? join(dataDir, 'tls', 'ca.pem'));
} catch {
  process.exit(1);
}
const req = request(
  {
    host: '127.0.0.1',
    servername: process.env.HEALTHCHECK_SERVERNAME ?? 'localhost',
    port,
    path: '/readyz',
    ca,
    timeout: 2_500,
  },
  (res) => {
    res.resume();
    process.exit(res.statusCode === 200 ? 0 : 1);
  },
);
req.on('timeout', () => req.destroy());
req.on('error', () => process.exit(1));
req.end();
