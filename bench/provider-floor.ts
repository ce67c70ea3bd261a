/**
 * What the cloud's kept frameworks cost per token request on this machine, with no sign-in behind
 * them: the floor under `cloud_cpu_ms_per_signin` that stays as long as fastify and oidc-provider
 * stay (the performance issue keeps the provider as the OAuth engine). One server process, three
 * layers, each driven by bench/load.ts in its own process with the same password-grant request:
 *
 *   - `https`: node:https answering with an ID-token-sized JSON body (TLS, HTTP parse and write);
 *   - `fastify`: the same answer from a fastify route (the cloud's router, no logger);
 *   - `provider`: fastify handing the request to oidc-provider as the cloud does (oidc/index.ts),
 *     a `password` grant that skips the sign-in and, like oidc/password-grant.ts, saves a Grant and
 *     an AccessToken (oidc-provider's in-memory adapter) and issues an ES256 ID token through the
 *     cloud's own `crypto.sign` key (oidc/signing.ts).
 *
 * The server's CPU (`process.cpuUsage`) over each measured window, divided by the requests in it,
 * is the layer's CPU per request; the best of `--rounds` windows is kept (the machine is shared).
 *
 *   node bench/provider-floor.ts [--concurrency 16] [--duration 5] [--rounds 3]
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import Provider, { type JWK } from 'oidc-provider';
import { EXTERNAL_SIGNING, localSigningKeys } from '../apps/cloud/src/oidc/signing.ts';
import { createCa, createServerCert } from '../packages/protocol/src/pki.ts';
import { cpuModel } from './floor.ts';
import type { LoadResult, LoadSpec } from './load.ts';

const LAYERS = ['https', 'fastify', 'provider'] as const;
type Layer = (typeof LAYERS)[number];

const ISSUER_PATH = '/t/v2.0';

/** An answer the size of the cloud's (access token, ID token with profile claims). */
const answer = JSON.stringify({
  access_token: 'a'.repeat(43),
  expires_in: 3600,
  token_type: 'Bearer',
  scope: 'openid',
  id_token: `${'h'.repeat(100)}.${'p'.repeat(420)}.${'s'.repeat(86)}`,
});

const makeProvider = (origin: string): Provider => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(privateKey.export({ format: 'jwk' }) as JWK), kid: 'k1', alg: 'ES256', use: 'sig' };
  const provider = new Provider(`${origin}${ISSUER_PATH}`, {
    jwks: localSigningKeys({ keys: [jwk] }),
    clients: [
      {
        client_id: 'bench',
        token_endpoint_auth_method: 'none',
        grant_types: ['password'],
        response_types: [],
        redirect_uris: [],
        id_token_signed_response_alg: 'ES256',
      },
    ],
    features: { devInteractions: { enabled: false }, externalSigningSupport: EXTERNAL_SIGNING },
    ttl: { AccessToken: 3600, IdToken: 3600, Grant: 86400, Interaction: 600, Session: 86400 },
    async findAccount(_koa, sub) {
      return { accountId: sub, claims: () => ({ sub }) };
    },
  });
  provider.registerGrantType(
    'password',
    async (koa) => {
      const { client } = koa.oidc;
      const accountId = `user-${String(koa.oidc.params?.username ?? '')}`;
      const grant = new provider.Grant({ accountId, clientId: client.clientId });
      grant.addOIDCScope('openid');
      const grantId = await grant.save();
      const at = new provider.AccessToken({ accountId, client, grantId, gty: 'password', scope: 'openid' });
      const accessToken = await at.save();
      const claims = { sub: accountId, name: 'Bench User', email: 'bench@example.test', auth_time: 1 };
      const token = new provider.IdToken(claims, { ctx: koa });
      (token as unknown as { scope: string }).scope = 'openid';
      const idToken = await token.issue({ use: 'idtoken' });
      koa.body = {
        access_token: accessToken,
        expires_in: at.expiration,
        token_type: 'Bearer',
        id_token: idToken,
      };
    },
    ['username', 'password', 'scope'],
  );
  return provider;
};

const startServer = async (tls: { key: string; cert: string }) => {
  type Handler = (req: IncomingMessage, res: ServerResponse) => void;
  let fastifyHandler: Handler = () => {};
  const server = createServer(tls, (req, res) => {
    if (req.url === '/https') {
      // Read the body as a real handler would before answering.
      req.resume();
      req.once('end', () => {
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(answer),
        });
        res.end(answer);
      });
      return;
    }
    fastifyHandler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = makeProvider(origin);
  const callback = provider.callback() as Handler;
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => {
      fastifyHandler = handler;
      return server;
    },
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_r, body, done) =>
    done(null, body),
  );
  app.post('/fastify', async (_req, reply) => reply.type('application/json').send(answer));
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    scope.all(`${ISSUER_PATH}/*`, (req, reply) => {
      reply.hijack();
      const raw = req.raw as IncomingMessage & { originalUrl?: string };
      raw.originalUrl = raw.url;
      raw.url = (raw.url ?? '/').slice(ISSUER_PATH.length) || '/';
      callback(raw, reply.raw);
    });
  });
  await app.ready();
  return { origin, close: () => app.close() };
};

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** One window of load against `url`: this process's CPU µs per request in it. */
const window = (spec: LoadSpec): Promise<{ usPerRequest: number; perSecond: number }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'load.ts'), JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    let c0 = 0;
    let used = 0;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (c0 === 0 && out.includes('measuring\n')) c0 = cpuUs();
      if (used === 0 && out.includes('done\n')) used = cpuUs() - c0;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`load exited ${code}`));
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as LoadResult;
      const failed = Object.values(r.errors).reduce((a, b) => a + b, 0);
      if (failed > 0 || r.requests === 0)
        return reject(new Error(`load errors: ${JSON.stringify(r.errors)}`));
      resolve({ usPerRequest: used / r.requests, perSecond: r.perSecond });
    });
  });

export const measureProviderFloor = async (opts: {
  concurrency: number;
  durationS: number;
  rounds: number;
}) => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-provider-floor-'));
  const ca = await createCa('provider floor CA', 1);
  const leaf = await createServerCert(ca, ['127.0.0.1'], 1);
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, ca.certPem);
  const srv = await startServer({ key: leaf.keyPem, cert: leaf.certPem });
  try {
    const best = {} as Record<Layer, { us: number; perSecond: number }>;
    for (let round = 0; round < opts.rounds; round++) {
      for (const layer of LAYERS) {
        const path = layer === 'provider' ? `${ISSUER_PATH}/token` : `/${layer}`;
        const w = await window({
          mode: 'grant',
          concurrency: opts.concurrency,
          warmupS: 2,
          durationS: opts.durationS,
          wrongPct: 0,
          password: 'unused',
          users: Array.from({ length: 1000 }, (_, i) => `u${i}`),
          tokenUrl: `${srv.origin}${path}`,
          caFile,
          clientId: 'bench',
        });
        if (!best[layer] || w.usPerRequest < best[layer].us)
          best[layer] = { us: w.usPerRequest, perSecond: w.perSecond };
      }
    }
    const us = (l: Layer) => Math.round(best[l].us);
    return {
      https_us: us('https'),
      fastify_us: us('fastify'),
      provider_us: us('provider'),
      provider_per_s: Math.round(best.provider.perSecond),
      cpu_model: cpuModel(),
    };
  } finally {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  }
};

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      concurrency: { type: 'string', default: '16' },
      duration: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
    },
  });
  const r = await measureProviderFloor({
    concurrency: Number(values.concurrency),
    durationS: Number(values.duration),
    rounds: Number(values.rounds),
  });
  process.stderr.write(
    `CPU per request: node:https ${r.https_us} µs, fastify ${r.fastify_us} µs, fastify + oidc-provider grant ${r.provider_us} µs (${r.cpu_model})\n`,
  );
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}
