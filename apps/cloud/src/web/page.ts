/**
 * What the cloud's server-rendered pages share (sign-in pages, agent approval page): escaping, the
 * page shell and its base style, and their headers. Plain HTML that works without JavaScript,
 * with a visible focus ring; each page adds only the rules it needs.
 */
const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ESC[c] ?? c);

const BASE_STYLE = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f3f4f6;color:#111827}
main{max-width:28rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 3px #0003}
h1{font-size:1.5rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input{width:100%;padding:.6rem;font:inherit;border:1px solid #6b7280;border-radius:.25rem}
button{padding:.7rem;font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:.25rem;cursor:pointer}
a,button,input{outline-offset:2px}
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #f59e0b}
.error{margin:1rem 0;padding:.75rem;border-left:4px solid #b91c1c;background:#fef2f2;color:#7f1d1d}
.muted{font-size:.9rem;color:#4b5563}
`;

export const htmlPage = (title: string, body: string, style = ''): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${esc(title)}</title>
<style>${BASE_STYLE}${style}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>`;

/**
 * A CSP source for where a form's submission may end up: the origin of an http(s) URL, or the
 * scheme of a native app's redirect (`com.example.app:`). Anything unparsable gives nothing.
 */
export const formTarget = (uri: unknown): string | undefined => {
  if (typeof uri !== 'string') return undefined;
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return undefined;
  }
  if (u.protocol === 'https:' || u.protocol === 'http:') return u.origin;
  // A URL's parser only yields [a-z0-9+.-] here, so the scheme cannot break out of the header.
  return /^[a-z][a-z0-9+.-]*:$/.test(u.protocol) ? u.protocol : undefined;
};

/**
 * The CSP of every server-rendered page: nothing loads from anywhere, inline style only, no framing.
 * `form-action` is 'self' plus `formTargets`: browsers also check it on the redirects that follow a
 * form post, so a sign-in form must allow where its redirects end (the client's redirect URI, a
 * federated domain's identity provider), or the last hop is blocked.
 */
export const pageCsp = (formTargets: readonly (string | undefined)[] = []): string => {
  const targets = [...new Set(formTargets.filter((t): t is string => !!t))];
  return [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    `form-action 'self'${targets.map((t) => ` ${t}`).join('')}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
};

/**
 * Headers for an HTML page: no caching, no scripts, forms only to `formTargets`. The rest (framing,
 * referrer, nosniff, HSTS) is set once for every answer by http/security-headers.ts.
 */
export const pageHeaders = (formTargets: readonly (string | undefined)[] = []): Record<string, string> => ({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': pageCsp(formTargets),
});
