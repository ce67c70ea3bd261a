/**
 * A small browser for the agent approval page over real HTTPS: a cookie jar that honours paths,
 * and the sign-in through the tenant's own sign-in pages (user name, then password), redirects
 * followed by hand, so the tests see every hop the approver's browser makes.
 */
import assert from 'node:assert/strict';
import { type Env, type HttpAnswer, https } from './gateway-harness.ts';

export interface ApprovalBrowser {
  get(path: string): Promise<HttpAnswer>;
  post(path: string, fields: Record<string, string>): Promise<HttpAnswer>;
  /**
   * Follows redirects from `answer` until one that is not, or until the next hop is a URL `stop`
   * accepts (not requested then); returns the last answer and where it was (or would go).
   */
  follow(answer: HttpAnswer, stop?: (url: URL) => boolean): Promise<{ answer: HttpAnswer; url: string }>;
  /**
   * Signs in from the page's sign-in link, as `upn`; returns the page it comes back to, or with
   * `stopAtCallback` the callback URL the provider sends the browser to, not yet opened.
   */
  signIn(
    upn: string,
    password: string,
    query?: string,
    opts?: { stopAtCallback?: boolean },
  ): Promise<{ answer: HttpAnswer; url: string }>;
  cookieNames(): string[];
  cookieValue(name: string): string | undefined;
}

export const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1];

export const approvalBrowser = (env: Env): ApprovalBrowser => {
  const jar = new Map<string, { name: string; value: string; path: string }>();
  const cookieFor = (url: URL) =>
    [...jar.values()]
      .filter((c) => url.pathname.startsWith(c.path))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ') || undefined;
  const keep = (res: HttpAnswer) => {
    const lines = res.headers['set-cookie'] ?? [];
    for (const line of Array.isArray(lines) ? lines : [lines]) {
      const [pair = '', ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const path = attrs.find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      const gone = attrs.some((a) => /^(expires=Thu, 01 Jan 1970|max-age=0$)/i.test(a));
      if (gone || pair.slice(eq + 1) === '') jar.delete(`${name}\0${path}`);
      else jar.set(`${name}\0${path}`, { name, value: pair.slice(eq + 1), path });
    }
    return res;
  };
  const request = async (url: URL, method = 'GET', fields?: Record<string, string>) =>
    keep(
      await https(url.href, {
        method,
        ca: env.ctx.tls.caCert,
        cookie: cookieFor(url),
        ...(fields
          ? { body: new URLSearchParams(fields).toString(), contentType: 'application/x-www-form-urlencoded' }
          : {}),
      }),
    );
  const at = (path: string) => new URL(path, env.appUrl);
  const b: ApprovalBrowser = {
    get: (path) => request(at(path)),
    post: (path, fields) => request(at(path), 'POST', fields),
    async follow(answer, stop) {
      let url = '';
      for (let i = 0; i < 10 && [302, 303].includes(answer.status); i++) {
        url = new URL(String(answer.headers.location), env.appUrl).href;
        if (stop?.(new URL(url))) break;
        answer = await request(new URL(url));
      }
      return { answer, url };
    },
    async signIn(upn, password, query = '', opts = {}) {
      const start = await b.follow(await b.get(`/${env.tenantId}/agents/device/signin${query}`));
      assert.equal(start.answer.status, 200, start.answer.text);
      assert.match(start.url, new RegExp(`/${env.tenantId}/v2\\.0/interaction/`), 'the tenant sign-in page');
      const named = await request(new URL(`${start.url}/username`), 'POST', {
        username: upn,
        csrf: csrfOf(start.answer.text) ?? '',
      });
      assert.equal(named.status, 200, named.text);
      const done = await request(new URL(`${start.url}/password`), 'POST', {
        username: upn,
        password,
        csrf: csrfOf(named.text) ?? '',
      });
      assert.equal(done.status, 303, done.text);
      return b.follow(done, opts.stopAtCallback ? (u) => u.pathname.endsWith('/callback') : undefined);
    },
    cookieNames: () => [...jar.values()].map((c) => c.name),
    cookieValue: (name) => [...jar.values()].find((c) => c.name === name)?.value,
  };
  return b;
};
