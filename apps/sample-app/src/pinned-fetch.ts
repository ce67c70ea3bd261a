/**
 * A fetch that trusts exactly one CA (PEM) and nothing else: the system store is not consulted,
 * so a certificate from any other issuer fails the TLS handshake. Built on node:https because
 * Node's global fetch cannot take a per-call CA. Used as openid-client's `customFetch` by the
 * sample app and the tests; redirects are never followed (openid-client asks for 'manual').
 */
import { request as httpsRequest } from 'node:https';

const toBuffer = async (body: unknown): Promise<Buffer | undefined> => {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof URLSearchParams) return Buffer.from(body.toString());
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  // Blob, FormData, streams: let the platform serialise them.
  return Buffer.from(await new Response(body as BodyInit).arrayBuffer());
};

const headerObject = (h: Headers): Record<string, string> => {
  const out: Record<string, string> = {};
  h.forEach((v, k) => {
    out[k] = v;
  });
  return out;
};

const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

export const pinnedFetch = (caPem: string | Buffer): typeof fetch => {
  const ca = typeof caPem === 'string' ? caPem : caPem.toString('utf8');
  if (!ca.includes('-----BEGIN CERTIFICATE-----'))
    throw new TypeError('pinnedFetch: the CA is not a PEM certificate');
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const req = input instanceof Request ? input : undefined;
    const url = new URL(req ? req.url : String(input));
    if (url.protocol !== 'https:')
      throw new TypeError(`pinnedFetch: only https URLs are allowed (${url.origin})`);
    const method = (init?.method ?? req?.method ?? 'GET').toUpperCase();
    const headers = new Headers(req?.headers);
    new Headers(init?.headers).forEach((v, k) => {
      headers.set(k, v);
    });
    const body = await toBuffer(
      init?.body ?? (req && method !== 'GET' ? await req.arrayBuffer() : undefined),
    );
    if (body) headers.set('content-length', String(body.length));
    const signal = init?.signal ?? req?.signal;
    signal?.throwIfAborted();

    return new Promise<Response>((resolve, reject) => {
      const r = httpsRequest(
        url,
        { method, headers: headerObject(headers), ca, signal: signal ?? undefined },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('error', reject);
          res.once('end', () => {
            const h = new Headers();
            for (const [k, v] of Object.entries(res.headers)) {
              if (Array.isArray(v)) for (const x of v) h.append(k, x);
              else if (v !== undefined) h.set(k, v);
            }
            const status = res.statusCode ?? 500;
            const payload = NULL_BODY_STATUS.has(status) || method === 'HEAD' ? null : Buffer.concat(chunks);
            const response = new Response(payload, { status, statusText: res.statusMessage, headers: h });
            // Response.url is read-only and empty for constructed responses; some callers read it.
            Object.defineProperty(response, 'url', { value: url.href });
            resolve(response);
          });
        },
      );
      r.once('error', reject);
      r.end(body);
    });
  };
};
