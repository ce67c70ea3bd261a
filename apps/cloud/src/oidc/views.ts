/**
 * The sign-in pages: plain HTML forms that work without JavaScript, with labels, autocomplete
 * hints for password managers, a visible focus ring and an error region screen readers announce.
 * Every value is escaped; a password is never written into a page.
 */
import { esc, htmlPage } from '../web/page.ts';

// Beyond the shared base: full-width fields and button, read-only fields, the small print.
const STYLE = `
main{max-width:26rem}
input[readonly]{background:#f3f4f6}
button{margin-top:1.25rem;width:100%}
.code{display:block;font-size:.8rem;color:#4b5563;margin-top:.25rem}
button.secondary{background:#4b5563}
`;

const page = (title: string, body: string): string => htmlPage(title, body, STYLE);

export interface PageError {
  message: string;
  /** Catalog code, shown in small print so the user can quote it to support. */
  code?: string;
  requestId?: string;
}

const errorRegion = (error?: PageError): string =>
  error
    ? `<div class="error" role="alert" id="error"><p>${esc(error.message)}</p>${
        error.code
          ? `<small class="code">Error code: ${esc(error.code)}${error.requestId ? ` · Request ID: ${esc(error.requestId)}` : ''}</small>`
          : ''
      }</div>`
    : // Present but empty so assistive technology already knows the live region.
      '<div role="alert" id="error"></div>';

export interface FormPage {
  action: string;
  csrf: string;
  clientName: string;
  error?: PageError;
}

export const usernamePage = (p: FormPage & { username?: string }): string =>
  page(
    'Sign in',
    `<h1>Sign in</h1>
<p class="muted">to continue to ${esc(p.clientName)}</p>
${errorRegion(p.error)}
<form method="post" action="${esc(p.action)}" novalidate>
<input type="hidden" name="csrf" value="${esc(p.csrf)}">
<label for="username">Email or user name</label>
<input id="username" name="username" type="text" inputmode="email" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus value="${esc(p.username ?? '')}"${p.error ? ' aria-describedby="error" aria-invalid="true"' : ''}>
<button type="submit">Next</button>
</form>`,
  );

export const passwordPage = (p: FormPage & { username: string; back: string }): string =>
  page(
    'Enter password',
    `<h1>Enter password</h1>
<p class="muted">to continue to ${esc(p.clientName)}</p>
${errorRegion(p.error)}
<form method="post" action="${esc(p.action)}" novalidate>
<input type="hidden" name="csrf" value="${esc(p.csrf)}">
<label for="username">Email or user name</label>
<input id="username" name="username" type="text" autocomplete="username" readonly value="${esc(p.username)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus${p.error ? ' aria-describedby="error" aria-invalid="true"' : ''}>
<button type="submit">Sign in</button>
</form>
<p class="muted"><a href="${esc(p.back)}">Use another account</a></p>`,
  );

/** What each scope lets a third-party app do, in the words the consent page uses. */
const SCOPE_TEXT: Record<string, string> = {
  openid: 'Sign you in',
  profile: 'See your name and user name',
  email: 'See your email address',
  offline_access: 'Keep access to what you allow here while you are not signed in',
};

/** Consent for a third-party app (first-party apps never show it): what it asks, allow or cancel. */
export const consentPage = (p: Omit<FormPage, 'error'> & { scopes: string[] }): string =>
  page(
    'Allow access',
    `<h1>Allow access</h1>
<p><strong>${esc(p.clientName)}</strong> is not an application of your organisation. It asks to:</p>
<ul>${p.scopes.map((s) => `<li>${esc(SCOPE_TEXT[s] ?? s)}</li>`).join('')}</ul>
<p class="muted">Allow it only if you trust ${esc(p.clientName)}. Your password is never shared with it.</p>
<form method="post" action="${esc(p.action)}">
<input type="hidden" name="csrf" value="${esc(p.csrf)}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Cancel</button>
</form>`,
  );

export const errorPage = (p: { title: string; message: string; code?: string }): string =>
  page(
    p.title,
    `<h1>${esc(p.title)}</h1>
${errorRegion({ message: p.message, code: p.code })}
<p class="muted">Go back to the application and start the sign-in again.</p>`,
  );

/**
 * oidc-provider's logout confirmation, in our page shell (its default loads a web font from
 * another host, which the CSP refuses). `form` is oidc-provider's own hidden form, with its
 * anti-forgery value; the buttons submit it.
 */
export const logoutPage = (p: { form: string; clientName?: string }): string =>
  page(
    'Sign out',
    `<h1>Sign out</h1>
<p>Do you want to sign out${p.clientName ? ` of ${esc(p.clientName)}` : ''}?</p>
${p.form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm" class="secondary">No, stay signed in</button>`,
  );

export const signedOutPage = (): string =>
  page('Signed out', '<h1>Signed out</h1><p class="muted">You can close this page.</p>');
