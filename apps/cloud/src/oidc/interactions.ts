/**
 * The sign-in pages behind oidc-provider's interactions: user name, home realm discovery, password.
 * Every POST carries a per-interaction CSRF token; the interaction cookie itself is SameSite=Lax.
 * A first-party app (the default) has the tenant's consent by being registered, so no consent page
 * is shown: the grant is made here with exactly the scopes and claims the client asked for. A
 * third-party app gets a consent page once per user and scope set (the grant remembers it).
 */
import { randomBytes } from 'node:crypto';
import { catalog, type ErrorCode } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { InteractionResults } from 'oidc-provider';
import { z } from 'zod';
import type { Authenticator } from '../signin/types.ts';
import { formTarget, pageHeaders } from '../web/page.ts';
import { SCOPES } from './claims.ts';
import type { Oidc, TenantOidc } from './provider.ts';
import { consentPage, errorPage, type PageError, passwordPage, usernamePage } from './views.ts';

type Interaction = Awaited<ReturnType<TenantOidc['provider']['interactionDetails']>>;
type Req = FastifyRequest<{ Params: { tenantId: string; uid: string }; Body?: unknown }>;

const UsernameBody = z.object({ csrf: z.string(), username: z.string().trim().min(1).max(256) });
const ConsentBody = z.object({ csrf: z.string(), decision: z.enum(['allow', 'deny']) });
const PasswordBody = z.object({
  csrf: z.string(),
  username: z.string().trim().min(1).max(256),
  password: z.string().min(1).max(1024),
});

/** `formTargets`: where the redirects after this page's form may end (the page's form-action). */
const html = (reply: FastifyReply, status: number, body: string, formTargets: (string | undefined)[] = []) =>
  reply.code(status).headers(pageHeaders(formTargets)).send(body);

const DEVICE_COOKIE = 'gh_device';
const DEVICE_ID = /^[A-Za-z0-9_-]{24}$/;

/** The browser's device id: smart lockout treats a browser where the user signed in before as familiar. */
const deviceOf = (req: FastifyRequest): string | undefined => {
  const v = req.cookies[DEVICE_COOKIE];
  return v && DEVICE_ID.test(v) ? v : undefined;
};

/** Gives a browser a device id on its first sign-in page (random, meaningless, long-lived). */
const ensureDevice = (req: FastifyRequest, reply: FastifyReply, tenantId: string) => {
  if (deviceOf(req)) return;
  const id = randomBytes(18).toString('base64url');
  reply.setCookie(DEVICE_COOKIE, id, {
    path: `/${tenantId}/v2.0`,
    maxAge: 31_536_000,
    httpOnly: true,
    secure: true,
    sameSite: 'lax',
  });
};

/** A catalog outcome as the page shows it: the message only when the catalog allows, the code always. */
const pageError = (code: ErrorCode, requestId?: string): PageError => {
  const entry = catalog[code];
  return { message: entry.shown ? entry.message : catalog.internal_error.message, code, requestId };
};

interface Deps {
  oidc: Oidc;
  authenticator: Authenticator;
  /** The tenant's federated identity providers: the user name form may redirect to them. */
  federationUrls?: (tenantId: string) => Promise<string[]>;
}

export const registerInteractions = (app: FastifyInstance, oidc: Oidc, deps: Omit<Deps, 'oidc'>) => {
  const d: Deps = { oidc, ...deps };
  const base = '/:tenantId/v2.0/interaction/:uid';
  app.get(base, (req: Req, reply) => showInteraction(d, req, reply));
  app.post(`${base}/username`, (req: Req, reply) => submitUsername(d, req, reply));
  app.post(`${base}/password`, (req: Req, reply) => submitPassword(d, req, reply));
  app.post(`${base}/consent`, (req: Req, reply) => submitConsent(d, req, reply));
};

/** oidc-provider sends every prompt here; a browser signed in already only has consent left. */
const showInteraction = async (deps: Deps, req: Req, reply: FastifyReply) => {
  const loaded = await load(deps.oidc, req, reply);
  if (!loaded) return reply;
  const { t, it } = loaded;
  ensureDevice(req, reply, t.tenantId);
  if (it.prompt.name === 'login') return renderUsername(deps, reply, t, it);
  if (it.prompt.name === 'consent' && it.session?.accountId) {
    if (!(await firstParty(t, it))) return renderConsent(reply, t, it);
    return finish(req, reply, t, it, it.session.accountId, false);
  }
  return cannotComplete(reply);
};

/** Home realm discovery: a federated user goes to their identity provider, anyone else to the password. */
const submitUsername = async (deps: Deps, req: Req, reply: FastifyReply) => {
  const loaded = await load(deps.oidc, req, reply);
  if (!loaded) return reply;
  const { t, it } = loaded;
  const body = UsernameBody.safeParse(req.body);
  if (!t.checkCsrf(it.uid, csrfOf(req))) return formExpired(reply);
  if (!body.success || it.prompt.name !== 'login') {
    return renderUsername(deps, reply, t, it, {
      error: { message: 'Enter your email or user name.' },
      status: 400,
    });
  }
  const realm = await deps.authenticator.discover(t.tenantId, body.data.username);
  if (realm.kind === 'federated') return reply.code(303).header('location', realm.redirect).send();
  return renderPassword(reply, t, it, body.data.username);
};

const submitPassword = async (deps: Deps, req: Req, reply: FastifyReply) => {
  const loaded = await load(deps.oidc, req, reply);
  if (!loaded) return reply;
  const { t, it } = loaded;
  if (!t.checkCsrf(it.uid, csrfOf(req))) return formExpired(reply);
  const body = PasswordBody.safeParse(req.body);
  if (!body.success || it.prompt.name !== 'login') return passwordMissing(deps, req, reply, t, it);
  const result = await deps.authenticator.authenticate({
    tenantId: t.tenantId,
    username: body.data.username,
    password: body.data.password,
    method: 'browser',
    clientId: String(it.params.client_id),
    clientIp: req.ip,
    deviceId: deviceOf(req),
    log: req.log,
  });
  if (!result.ok) {
    return renderPassword(
      reply,
      t,
      it,
      body.data.username,
      pageError(result.code, result.requestId),
      catalog[result.code].status,
    );
  }
  if (await firstParty(t, it)) return finish(req, reply, t, it, result.user.id, true);
  // Signed in; the provider comes back with a consent prompt unless an earlier grant covers it.
  reply.hijack();
  await t.provider.interactionFinished(
    req.raw,
    reply.raw,
    { login: { accountId: result.user.id, amr: ['pwd'] } },
    { mergeWithLastSubmission: false },
  );
};

/** Without a user name there is nothing to ask a password for, so that page comes back instead. */
const passwordMissing = (deps: Deps, req: Req, reply: FastifyReply, t: TenantOidc, it: Interaction) => {
  const username =
    typeof (req.body as { username?: unknown })?.username === 'string'
      ? String((req.body as { username: string }).username)
      : '';
  if (!username) return renderUsername(deps, reply, t, it, { status: 400 });
  return renderPassword(reply, t, it, username, { message: 'Enter your password.' }, 400);
};

/** Only a third-party app gets here: a first-party one is granted without asking (finish). */
const submitConsent = async (deps: Deps, req: Req, reply: FastifyReply) => {
  const loaded = await load(deps.oidc, req, reply);
  if (!loaded) return reply;
  const { t, it } = loaded;
  const body = ConsentBody.safeParse(req.body);
  const accountId = it.session?.accountId;
  if (!t.checkCsrf(it.uid, csrfOf(req)) || !body.success) return formExpired(reply);
  if (it.prompt.name !== 'consent' || !accountId) return cannotComplete(reply);
  if (body.data.decision === 'allow') return finish(req, reply, t, it, accountId, false);
  reply.hijack();
  await t.provider.interactionFinished(
    req.raw,
    reply.raw,
    { error: 'access_denied', error_description: 'The user did not allow the application.' },
    { mergeWithLastSubmission: false },
  );
};

/** Loads the tenant and the interaction named by the URL and bound to this browser's cookie. */
const load = async (
  oidc: Oidc,
  req: Req,
  reply: FastifyReply,
): Promise<{ t: TenantOidc; it: Interaction } | null> => {
  const t = await oidc.forTenant(req.params.tenantId);
  if (!t) {
    html(reply, 404, errorPage({ title: 'Not found', message: 'This organisation does not exist.' }));
    return null;
  }
  let it: Interaction;
  try {
    it = await t.provider.interactionDetails(req.raw, reply.raw);
  } catch {
    it = undefined as unknown as Interaction;
  }
  if (!it || it.uid !== req.params.uid) {
    html(
      reply,
      400,
      errorPage({
        title: 'Sign-in expired',
        message: 'Your sign-in session has expired or is not valid in this browser.',
      }),
    );
    return null;
  }
  return { t, it };
};

/** Grants what the client asked for (the tenant consented by registering it) and resumes. */
const finish = async (
  req: Req,
  reply: FastifyReply,
  t: TenantOidc,
  it: Interaction,
  accountId: string,
  login: boolean,
) => {
  const { Grant } = t.provider;
  const existing = it.grantId ? await Grant.find(it.grantId) : undefined;
  const grant =
    existing && existing.accountId === accountId
      ? existing
      : new Grant({ accountId, clientId: String(it.params.client_id) });
  grant.addOIDCScope(requestedScopes(it));
  await t.grantResourceScopes(grant, it.params);
  const claims = requestedClaims(it.params.claims);
  if (claims.length) grant.addOIDCClaims(claims);
  const grantId = await grant.save();
  const result: InteractionResults = { consent: { grantId } };
  if (login) result.login = { accountId, amr: ['pwd'] };
  reply.hijack();
  await t.provider.interactionFinished(req.raw, reply.raw, result, { mergeWithLastSubmission: login });
};

const csrfOf = (req: Req): unknown => (req.body as { csrf?: unknown } | undefined)?.csrf;

const clientName = async (t: TenantOidc, it: Interaction): Promise<string> => {
  const client = await t.provider.Client.find(String(it.params.client_id));
  return client?.clientName ?? client?.clientId ?? 'the application';
};

/** Rows written before the setting existed have none: those apps were all first-party. */
const firstParty = async (t: TenantOidc, it: Interaction): Promise<boolean> => {
  const client = await t.provider.Client.find(String(it.params.client_id));
  return (client as { gatehouse_first_party?: boolean } | undefined)?.gatehouse_first_party !== false;
};

// A sign-in ends at the client's redirect URI (oidc-provider checked it is registered).
const redirectTarget = (it: Interaction) => formTarget(it.params.redirect_uri);

const formExpired = (reply: FastifyReply) =>
  html(
    reply,
    403,
    errorPage({ title: 'Sign-in error', message: 'The form has expired. Start again.', code: 'forbidden' }),
  );

const cannotComplete = (reply: FastifyReply) =>
  html(
    reply,
    400,
    errorPage({ title: 'Sign-in error', message: 'This sign-in request cannot be completed.' }),
  );

const renderConsent = async (reply: FastifyReply, t: TenantOidc, it: Interaction) =>
  html(
    reply,
    200,
    consentPage({
      action: `${t.prefix}/interaction/${it.uid}/consent`,
      csrf: t.csrfToken(it.uid),
      clientName: await clientName(t, it),
      scopes: requestedScopes(it),
    }),
    [redirectTarget(it)],
  );

const renderUsername = async (
  deps: Deps,
  reply: FastifyReply,
  t: TenantOidc,
  it: Interaction,
  opts: { username?: string; error?: PageError; status?: number } = {},
) =>
  html(
    reply,
    opts.status ?? 200,
    usernamePage({
      action: `${t.prefix}/interaction/${it.uid}/username`,
      csrf: t.csrfToken(it.uid),
      clientName: await clientName(t, it),
      username:
        opts.username ?? (typeof it.params.login_hint === 'string' ? it.params.login_hint : undefined),
      error: opts.error,
    }),
    [redirectTarget(it), ...((await deps.federationUrls?.(t.tenantId)) ?? []).map(formTarget)],
  );

const renderPassword = async (
  reply: FastifyReply,
  t: TenantOidc,
  it: Interaction,
  username: string,
  error?: PageError,
  status = 200,
) =>
  html(
    reply,
    status,
    passwordPage({
      action: `${t.prefix}/interaction/${it.uid}/password`,
      back: `${t.prefix}/interaction/${it.uid}`,
      csrf: t.csrfToken(it.uid),
      clientName: await clientName(t, it),
      username,
      error,
    }),
    [redirectTarget(it)],
  );

/** The OIDC scopes the client asked for that the tenant supports. */
const requestedScopes = (it: Interaction): string[] => {
  const supported = new Set<string>(SCOPES);
  return String(it.params.scope ?? '')
    .split(' ')
    .filter((s) => supported.has(s));
};

/** Claim names from an OIDC `claims` request parameter (JSON), for the grant. */
const requestedClaims = (raw: unknown): string[] => {
  if (typeof raw !== 'string' || !raw) return [];
  try {
    const parsed = JSON.parse(raw) as { id_token?: object; userinfo?: object };
    return [...Object.keys(parsed.id_token ?? {}), ...Object.keys(parsed.userinfo ?? {})];
  } catch {
    return [];
  }
};
