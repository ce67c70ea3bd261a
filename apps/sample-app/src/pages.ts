/** The sample app's HTML. Every value is escaped; no script runs on any page. */

const esc = (v: unknown): string =>
  String(v).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

const layout = (title: string, body: string): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} - Gatehouse sample app</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 48rem; padding: 0 1rem; color: #1b1b1b; }
  header { display: flex; justify-content: space-between; align-items: center; border-bottom: 1px solid #ccc; }
  table { border-collapse: collapse; width: 100%; }
  caption { text-align: left; font-weight: 600; padding: .5rem 0; }
  th, td { border: 1px solid #ccc; padding: .4rem .6rem; text-align: left; vertical-align: top; }
  th { background: #f2f2f2; width: 12rem; }
  td { word-break: break-all; }
  .button { display: inline-block; background: #0b57d0; color: #fff; border: 0; border-radius: 4px;
            padding: .5rem 1rem; font: inherit; text-decoration: none; cursor: pointer; }
  .button:focus-visible { outline: 3px solid #f9a825; outline-offset: 2px; }
  [role="alert"] { border-left: 4px solid #b3261e; padding: .5rem 1rem; background: #fdecea; }
</style>
</head>
<body>
<header><p><a href="/">Gatehouse sample app</a></p></header>
<main>
${body}
</main>
</body>
</html>
`;

const signOutForm = `<form method="post" action="/logout"><button class="button" type="submit">Sign out</button></form>`;

export const homePage = (user: { name: string } | null, issuer: string): string =>
  layout(
    'Home',
    user
      ? `<h1>Welcome, ${esc(user.name)}</h1>
<p>You are signed in. <a href="/profile">See your profile and token claims</a>.</p>
${signOutForm}`
      : `<h1>Gatehouse sample app</h1>
<p>This relying party signs you in with OpenID Connect (authorization code with PKCE) at
<code>${esc(issuer)}</code>.</p>
<p><a class="button" href="/login">Sign in</a></p>`,
  );

/** Claims shown first, in this order, with a readable label; any other claim follows. */
const KNOWN: ReadonlyArray<readonly [string, string]> = [
  ['name', 'Name'],
  ['upn', 'User principal name'],
  ['preferred_username', 'Preferred user name'],
  ['email', 'Email'],
  ['tid', 'Tenant ID'],
  ['oid', 'Object ID'],
  ['sub', 'Subject'],
  ['iss', 'Issuer'],
  ['aud', 'Audience'],
  ['roles', 'Roles'],
  ['amr', 'Authentication methods'],
  ['auth_time', 'Authenticated at'],
  ['iat', 'Issued at'],
  ['exp', 'Expires at'],
];
const TIME_CLAIMS = new Set(['auth_time', 'iat', 'exp', 'nbf']);
const HIDDEN = new Set(['nonce', 'at_hash', 'c_hash', 's_hash', 'sid']);

const claimValue = (key: string, v: unknown): string => {
  if (TIME_CLAIMS.has(key) && typeof v === 'number') return `${new Date(v * 1000).toISOString()} (${v})`;
  if (Array.isArray(v)) return v.length ? v.map(String).join(', ') : '(none)';
  if (typeof v === 'object' && v !== null) return JSON.stringify(v);
  return String(v);
};

export interface ProfileView {
  claims: Record<string, unknown>;
  accessTokenExpiresAt?: number;
  hasRefreshToken: boolean;
}

export const profilePage = (p: ProfileView): string => {
  const known = new Set(KNOWN.map(([k]) => k));
  const rows = [
    ...KNOWN.filter(([k]) => p.claims[k] !== undefined).map(([k, label]) => [k, label] as const),
    ...Object.keys(p.claims)
      .filter((k) => !known.has(k) && !HIDDEN.has(k))
      .sort()
      .map((k) => [k, k] as const),
  ]
    .map(
      ([k, label]) =>
        `<tr><th scope="row" data-claim="${esc(k)}">${esc(label)}</th><td data-claim="${esc(k)}">${esc(claimValue(k, p.claims[k]))}</td></tr>`,
    )
    .join('\n');
  const at = p.accessTokenExpiresAt ? new Date(p.accessTokenExpiresAt).toISOString() : 'unknown';
  return layout(
    'Profile',
    `<h1>Your profile</h1>
<table aria-describedby="claims-note">
<caption>ID token claims</caption>
<thead><tr><th scope="col">Claim</th><th scope="col">Value</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<p id="claims-note">These claims come from the ID token the identity provider issued for this sign-in.
The access token expires at ${esc(at)}; a refresh token was ${p.hasRefreshToken ? '' : 'not '}issued.
Tokens themselves are never shown.</p>
${signOutForm}`,
  );
};

export const errorPage = (title: string, message: string, detail?: string): string =>
  layout(
    title,
    `<h1>${esc(title)}</h1>
<div role="alert"><p>${esc(message)}</p>${detail ? `<p><code>${esc(detail)}</code></p>` : ''}</div>
<p><a href="/">Back to the home page</a></p>`,
  );
