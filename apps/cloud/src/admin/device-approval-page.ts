/**
 * The page where an administrator approves an agent's device code (RFC 8628). Plain HTML that
 * works without JavaScript: labelled fields, an error region announced to screen readers, a
 * visible focus ring. Every value is escaped. It asks for no password: the approver signs in
 * through the tenant's sign-in pages (approver-session.ts) and the page names who is signed in.
 */
import type { PendingDeviceCode } from '../store/device-codes.ts';
import { esc, htmlPage } from '../web/page.ts';

const APPROVERS = 'a Global Administrator or Hybrid Identity Administrator of this organisation';

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
.who{margin:1rem 0 0}
form.signin button{width:100%;margin-top:1rem}
`;

const page = (title: string, body: string): string => htmlPage(title, body, STYLE);

export interface DeviceFormView {
  action: string;
  csrf: string;
  /** Who is signed in, and where to sign in as someone else. */
  upn: string;
  switchUrl: string;
  userCode?: string;
  /** Shown when the code is pending, so the approver sees who asks and what of it is unverified. */
  request?: PendingDeviceCode;
  error?: string;
}

const errorRegion = (error?: string): string =>
  error
    ? `<div class="error" role="alert" id="error"><p>${esc(error)}</p></div>`
    : // Present but empty so assistive technology already knows the live region.
      '<div role="alert" id="error"></div>';

const signedInAs = (upn: string, switchUrl: string): string =>
  `<p class="who muted">Signed in as <strong>${esc(upn)}</strong>. <a href="${esc(switchUrl)}">Sign in as another user</a></p>`;

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
<p class="muted">An agent installed on premises asks to join this organisation. Approve only a code
you started yourself.</p>
${v.request ? requestDetails(v.request) : ''}
${errorRegion(v.error)}
<form method="post" action="${esc(v.action)}">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
${v.request && v.userCode ? `<input type="hidden" name="reviewed" value="${esc(v.userCode)}">` : ''}
<label for="user_code">Code shown by the agent</label>
<input id="user_code" name="user_code" required autocomplete="off" autocapitalize="characters" spellcheck="false"
 inputmode="text" maxlength="16" placeholder="XXXX-XXXX" aria-describedby="code-help" value="${esc(v.userCode ?? '')}">
<small id="code-help" class="muted">Eight letters, e.g. BCDF-GHJK.</small>
<div class="actions">
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny" class="deny">Deny</button>
</div>
</form>
${signedInAs(v.upn, v.switchUrl)}`,
  );

/** Before sign-in: nothing about any request is shown to someone the cloud does not know. */
export const signInView = (v: { signInUrl: string; userCode?: string; error?: string }): string =>
  page(
    'Approve a Gatehouse Agent',
    `<h1>Approve a Gatehouse Agent</h1>
<p class="muted">An agent installed on premises asks to join this organisation. Only ${APPROVERS}
can approve it. Sign in with your organisation account to see who is asking.</p>
${errorRegion(v.error)}
<form class="signin" method="get" action="${esc(v.signInUrl)}">
${v.userCode ? `<input type="hidden" name="user_code" value="${esc(v.userCode)}">` : ''}
<button type="submit">Sign in</button>
</form>`,
  );

/** Signed in, but not an approver: no request details, and a way to sign in as someone else. */
export const notAnApprover = (v: { upn: string; switchUrl: string }): string =>
  page(
    'Not allowed to approve',
    `<h1>Not allowed to approve</h1>
${errorRegion(`Only ${APPROVERS} can approve agents.`)}
${signedInAs(v.upn, v.switchUrl)}`,
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
