/**
 * A small relying party: signs users in at a Gatehouse tenant with the authorization code flow
 * (PKCE, state and nonce), shows the ID token's claims and signs out locally. openid-client does
 * the protocol; the issuer's certificate is checked against a pinned CA only.
 *
 *   npx node apps/sample-app/src/main.ts --issuer URL --client-id ID [--ca-file CA] [--port 3000]
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isGatehouseError } from '@gatehouse/protocol';
import * as oidc from 'openid-client';
import { pino } from 'pino';
import { loadSampleAppConfig, type SampleAppConfig } from './config.ts';
import { errorPage, homePage, profilePage } from './pages.ts';
import { pinnedFetch } from './pinned-fetch.ts';

interface Session {
  expiresAt: number;
  /** Set between /login and /callback only. */
  pending?: { state: string; nonce: string; codeVerifier: string };
  user?: { claims: Record<string, unknown>; accessTokenExpiresAt?: number; hasRefreshToken: boolean };
}

const COOKIE = 'sample_sid';
const SESSION_TTL_MS = 8 * 3600_000;
const PENDING_TTL_MS = 10 * 60_000;

export interface SampleApp {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** True when the issuer is not listening yet (worth retrying); TLS and HTTP errors are not. */
const notListening = (err: unknown): boolean => {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET') return true;
  }
  return false;
};

/** Discovery, retried while the issuer is not up yet, so the app may start a moment before the cloud. */
const discover = async (c: SampleAppConfig, log: pino.Logger): Promise<oidc.Configuration> => {
  const options: oidc.DiscoveryRequestOptions = {};
  if (c.caPem) options[oidc.customFetch] = pinnedFetch(c.caPem) as oidc.CustomFetch;
  const auth = c.clientSecret ? oidc.ClientSecretPost(c.clientSecret) : oidc.None();
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await oidc.discovery(new URL(c.issuer), c.clientId, undefined, auth, options);
    } catch (err) {
      if (!notListening(err) || Date.now() > deadline) throw err;
      log.warn({ issuer: c.issuer }, 'the issuer is not reachable yet; retrying');
      await new Promise((r) => setTimeout(r, 500));
    }
  }
};

const readCookie = (req: IncomingMessage, name: string): string | undefined => {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
};

export const startSampleApp = async (c: SampleAppConfig): Promise<SampleApp> => {
  const log = pino({ name: 'sample-app', level: c.logLevel });
  const config = await discover(c, log);
  const sessions = new Map<string, Session>();
  const secure = c.baseUrl.startsWith('https:');
  // Port 0 (tests) is replaced by the bound port once listening.
  let base = c.baseUrl;
  let baseHost = new URL(base).host;

  const setSession = (res: ServerResponse, id: string | null) => {
    const attrs = `Path=/; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
    res.setHeader('set-cookie', id ? `${COOKIE}=${id}; ${attrs}` : `${COOKIE}=; ${attrs}; Max-Age=0`);
  };
  const getSession = (req: IncomingMessage): [string, Session] | null => {
    const id = readCookie(req, COOKIE);
    const s = id ? sessions.get(id) : undefined;
    if (!id || !s) return null;
    if (s.expiresAt < Date.now()) {
      sessions.delete(id);
      return null;
    }
    return [id, s];
  };
  /** A new id at every privilege change, so a planted cookie never becomes a signed-in one. */
  const newSession = (res: ServerResponse, s: Omit<Session, 'expiresAt'>, ttl: number): void => {
    const id = randomBytes(32).toString('base64url');
    sessions.set(id, { ...s, expiresAt: Date.now() + ttl });
    setSession(res, id);
  };
  const prune = setInterval(() => {
    const now = Date.now();
    for (const [id, s] of sessions) if (s.expiresAt < now) sessions.delete(id);
  }, 60_000);
  prune.unref();

  const send = (res: ServerResponse, status: number, html: string) => {
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy':
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    res.end(html);
  };
  const redirect = (res: ServerResponse, location: string) => {
    res.writeHead(303, { location, 'cache-control': 'no-store' });
    res.end();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', base);
    const route = `${req.method} ${url.pathname}`;
    // The session cookie belongs to the base URL's host: a visit on another name for this
    // server (localhost for 127.0.0.1) would lose it at the callback, so move it over first.
    if (req.method === 'GET' && req.headers.host && req.headers.host !== baseHost) {
      redirect(res, url.href);
      return;
    }
    const current = getSession(req);
    switch (route) {
      case 'GET /healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case 'GET /': {
        const claims = current?.[1].user?.claims;
        const name = claims
          ? String(claims.name ?? claims.upn ?? claims.preferred_username ?? claims.sub)
          : null;
        send(res, 200, homePage(name ? { name } : null, c.issuer));
        return;
      }
      case 'GET /login': {
        const pending = {
          state: oidc.randomState(),
          nonce: oidc.randomNonce(),
          codeVerifier: oidc.randomPKCECodeVerifier(),
        };
        if (current) sessions.delete(current[0]);
        newSession(res, { pending }, PENDING_TTL_MS);
        const target = oidc.buildAuthorizationUrl(config, {
          redirect_uri: `${base}/callback`,
          scope: c.scope,
          state: pending.state,
          nonce: pending.nonce,
          code_challenge: await oidc.calculatePKCECodeChallenge(pending.codeVerifier),
          code_challenge_method: 'S256',
        });
        redirect(res, target.href);
        return;
      }
      case 'GET /callback': {
        const pending = current?.[1].pending;
        if (!current || !pending) {
          send(
            res,
            400,
            errorPage('Sign-in failed', 'This sign-in was not started here, or it expired. Try again.'),
          );
          return;
        }
        sessions.delete(current[0]);
        const opError = url.searchParams.get('error');
        if (opError) {
          const description = url.searchParams.get('error_description') ?? '';
          log.info({ error: opError }, 'the identity provider refused the sign-in');
          setSession(res, null);
          send(
            res,
            400,
            errorPage('Sign-in failed', description || 'The identity provider refused the sign-in.', opError),
          );
          return;
        }
        try {
          const tokens = await oidc.authorizationCodeGrant(config, url, {
            pkceCodeVerifier: pending.codeVerifier,
            expectedState: pending.state,
            expectedNonce: pending.nonce,
            idTokenExpected: true,
          });
          const claims = { ...(tokens.claims() ?? {}) } as Record<string, unknown>;
          const expiresIn = tokens.expiresIn();
          newSession(
            res,
            {
              user: {
                claims,
                accessTokenExpiresAt: expiresIn === undefined ? undefined : Date.now() + expiresIn * 1000,
                hasRefreshToken: Boolean(tokens.refresh_token),
              },
            },
            SESSION_TTL_MS,
          );
          log.info({ sub: claims.sub, tid: claims.tid }, 'signed in');
          redirect(res, '/profile');
        } catch (err) {
          const e = err as Error & { error?: string; code?: string };
          log.warn({ err: e.message, code: e.error ?? e.code }, 'code exchange failed');
          setSession(res, null);
          send(
            res,
            400,
            errorPage('Sign-in failed', 'The sign-in could not be completed.', e.error ?? e.code),
          );
        }
        return;
      }
      case 'GET /profile': {
        const user = current?.[1].user;
        if (!user) {
          redirect(res, '/');
          return;
        }
        send(res, 200, profilePage(user));
        return;
      }
      case 'POST /logout':
        // Local sign-out only: the session at the identity provider is left alone.
        if (current) sessions.delete(current[0]);
        setSession(res, null);
        redirect(res, '/');
        return;
      default:
        send(res, 404, errorPage('Not found', 'There is no such page.'));
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err: (err as Error).message }, 'request failed');
      if (!res.headersSent)
        send(res, 500, errorPage('Something went wrong', 'The request could not be handled.'));
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(c.port, c.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  base = c.baseUrl.replace(/:0$/, `:${port}`);
  baseHost = new URL(base).host;
  const url = base;
  log.info({ url, issuer: c.issuer, redirectUri: `${base}/callback` }, 'sample app listening');
  return {
    url,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(prune);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

if (import.meta.main) {
  try {
    const app = await startSampleApp(loadSampleAppConfig());
    const stop = () => void app.close().then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  } catch (err) {
    if (isGatehouseError(err)) {
      console.error(`sample-app: ${err.message}`, JSON.stringify(err.detail ?? ''));
    } else if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      console.error(`sample-app: port ${(err as { port?: number }).port ?? ''} is already in use`);
    } else {
      const cause = (err as Error).cause as Error | undefined;
      console.error(`sample-app: ${(err as Error).message}${cause?.message ? ` (${cause.message})` : ''}`);
    }
    process.exit(1);
  }
}
