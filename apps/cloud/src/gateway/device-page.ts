/**
 * The page where an administrator approves an agent's device code (RFC 8628). Plain HTML that
 * works without JavaScript: labelled fields, autocomplete hints, an error region announced to
 * screen readers, a visible focus ring. Every value is escaped; a password is never written back.
 */
import { randomBytes } from 'node:crypto';
import type { PendingDeviceCode } from '../store/device-codes.ts';
import { csrfToken as formToken, csrfValid as formTokenValid } from '../web/csrf.ts';
import { esc, htmlPage } from '../web/page.ts';

/** The nonce cookie; __Host- pins it to this origin, HTTPS and path /. */
export const CSRF_COOKIE = '__Host-gh_device_nonce';

/** User codes use letters that cannot be mistaken for each other or spell words (RFC 8628 6.1). */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

/** "bcdf ghjk", "BCDF-GHJK" and "bcdfghjk" all mean BCDF-GHJK; anything else is null. */
export const normalizeUserCode = (input: string): string | null => {
  const letters = input.toUpperCase().replace(/[^A-Z]/g, '');
  if (letters.length !== 8 || [...letters].some((c) => !USER_CODE_ALPHABET.includes(c))) return null;
  return `${letters.slice(0, 4)}-${letters.slice(4)}`;
};

export const newNonce = (): string => randomBytes(24).toString('base64url');

/** The form's token: an HMAC of the cookie's nonce, so a cross-site form cannot forge it. */
export const csrfToken = (key: Buffer, nonce: string): string => formToken(key, `agents-device\n${nonce}`);

export const csrfValid = (key: Buffer, nonce: string | undefined, token: string): boolean =>
  formTokenValid(key, nonce === undefined ? undefined : `agents-device\n${nonce}`, token);

// Beyond the shared base: two buttons side by side, and the success note.
const STYLE = `
.actions{display:flex;gap:.75rem;margin-top:1.25rem}
button{flex:1}
button.deny{background:#4b5563}
.ok{margin:1rem 0;padding:.75rem;border-left:4px solid #15803d;background:#f0fdf4;color:#14532d}
.request{margin:1rem 0;padding:.75rem;border-left:4px solid #b45309;background:#fffbeb;color:#451a03}
.request h2{font-size:1rem;margin:0 0 .5rem}
.request dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem .75rem;margin:0 0 .5rem}
.request dt{font-weight:600}
.request dd{margin:0;overflow-wrap:anywhere}
.request p{margin:.5rem 0 0}
`;

const page = (title: string, body: string): string => htmlPage(title, body, STYLE);

export interface DeviceFormView {
  action: string;
  csrf: string;
  userCode?: string;
  /** Shown when the code is pending, so the approver sees who asks and what of it is unverified. */
  request?: PendingDeviceCode;
  username?: string;
  error?: string;
}

/** UTC, to the second: the approver compares it with when they started the agent. */
const utc = (ms: number): string => `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;

/**
 * Who asks, and what of it can be trusted: the address and time are the cloud's own observation;
 * the host name is whatever the requester typed, which is what a phishing request would fake.
 */
const requestDetails = (
  r: PendingDeviceCode,
): string => `<section class="request" aria-labelledby="request-h">
<h2 id="request-h">Who is asking</h2>
<dl>
<dt>Host name</dt><dd><strong>${esc(r.hostname)}</strong> (the requester's own claim)</dd>
<dt>Requested from</dt><dd>${esc(r.requesterIp ?? 'unknown')}</dd>
<dt>Requested at</dt><dd>${r.requestedAt === null ? 'unknown' : esc(utc(r.requestedAt))}</dd>
</dl>
<p><strong>Warning:</strong> anyone can ask for a code and name any host. Gatehouse has not checked the
host name. Approve only if you started this agent's registration yourself, from this address, at this time.</p>
</section>`;

export const deviceForm = (v: DeviceFormView): string =>
  page(
    'Approve a Gatehouse Agent',
    `<h1>Approve a Gatehouse Agent</h1>
<p class="muted">An agent installed on premises asks to join this organisation. Only a cloud-only
Global Administrator or Hybrid Identity Administrator can approve it. Approve only a code you
started yourself.</p>
${v.request ? requestDetails(v.request) : ''}
${v.error ? `<div class="error" role="alert" id="error"><p>${esc(v.error)}</p></div>` : '<div role="alert" id="error"></div>'}
<form method="post" action="${esc(v.action)}">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
${v.request && v.userCode ? `<input type="hidden" name="reviewed" value="${esc(v.userCode)}">` : ''}
<label for="user_code">Code shown by the agent</label>
<input id="user_code" name="user_code" required autocomplete="off" autocapitalize="characters" spellcheck="false"
 inputmode="text" maxlength="16" placeholder="XXXX-XXXX" aria-describedby="code-help" value="${esc(v.userCode ?? '')}">
<small id="code-help" class="muted">Eight letters, e.g. BCDF-GHJK.</small>
<label for="username">Your administrator user name</label>
<input id="username" name="username" type="email" required autocomplete="username" value="${esc(v.username ?? '')}">
<label for="password">Your password</label>
<input id="password" name="password" type="password" required autocomplete="current-password">
<div class="actions">
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny" class="deny">Deny</button>
</div>
</form>`,
  );

export const deviceDone = (approved: boolean, hostname: string): string =>
  page(
    approved ? 'Agent approved' : 'Agent denied',
    `<h1>${approved ? 'Agent approved' : 'Agent denied'}</h1>
<div class="ok" role="status"><p>${
      approved
        ? `The agent on <strong>${esc(hostname)}</strong> will finish registering within a few seconds. You can close this page.`
        : `The request from <strong>${esc(hostname)}</strong> was denied. The agent will stop asking.`
    }</p></div>`,
  );

export const deviceNotFound = (): string =>
  page('Not found', '<h1>Not found</h1><p>There is no such organisation.</p>');
