/**
 * The human side of the RFC 8628 device flow: /TENANT_ID/agents/device, where a tenant
 * administrator, signed in through the tenant's own provider (approver-session.ts), approves or
 * denies the code an agent shows. The agent's side (codes, polls, limits) is gateway/device-flow.ts.
 *
 * Nothing about a request is shown before the approver is known: signed out, the page offers only
 * the sign-in; signed in without an admin role, it says so. Approving takes the session, the
 * form's CSRF token bound to it, and an approver who has seen who is asking.
 */
import { TenantId } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { CloudContext } from '../context.ts';
import { normalizeUserCode } from '../gateway/device-flow.ts';
import type { Oidc } from '../oidc/index.ts';
import { audit } from '../store/audit.ts';
import { decideDeviceCode, deviceCodeByUserCode, findPendingDeviceCode } from '../store/device-codes.ts';
import { tenantExists } from '../store/tenants.ts';
import type { User } from '../store/users.ts';
import { pageHeaders } from '../web/page.ts';
import { type ApproverSession, approverSession, canApprove } from './approver-session.ts';
import { deviceDone, deviceForm, deviceNotFound, notAnApprover, signInView } from './device-approval-page.ts';

const DecisionForm = z.object({
  csrf: z.string().max(128),
  user_code: z.string().max(32),
  action: z.enum(['approve', 'deny']),
  /** The code whose request details the form showed (absent when the approver typed the code). */
  reviewed: z.string().max(32).optional(),
});
const TenantParam = z.object({ tenantId: TenantId });
// A stray or malformed parameter is ignored rather than losing the other.
const CodeQuery = z.object({
  user_code: z.string().max(32).optional().catch(undefined),
  prompt: z.literal('login').optional().catch(undefined),
});

interface View {
  userCode?: string;
  error?: string;
  status?: number;
}

type Page = (req: FastifyRequest, reply: FastifyReply, tenantId: string, v: View) => Promise<FastifyReply>;

const html = (reply: FastifyReply, status: number, body: string) =>
  reply.code(status).headers(pageHeaders()).send(body);

const paths = (tenantId: string, userCode?: string) => {
  const page = `/${encodeURIComponent(tenantId)}/agents/device`;
  const code = userCode ? `&user_code=${encodeURIComponent(userCode)}` : '';
  return { page, signIn: `${page}/signin`, switchUser: `${page}/signin?prompt=login${code}` };
};

/** The page for whoever is at it: the sign-in, a refusal, or the form with who is asking. */
const showPage =
  (ctx: CloudContext, session: ApproverSession): Page =>
  async (req, reply, tenantId, v) => {
    const user = await session.approver(req, tenantId);
    const code = v.userCode ? normalizeUserCode(v.userCode) : null;
    const p = paths(tenantId, code ?? undefined);
    if (!user) {
      const view = { signInUrl: p.signIn, userCode: code ?? undefined, error: v.error };
      return html(reply, v.status ?? 200, signInView(view));
    }
    if (!canApprove(user)) return html(reply, 403, notAnApprover({ upn: user.upn, switchUrl: p.switchUser }));
    const request = code ? await findPendingDeviceCode(ctx.db, tenantId, code, ctx.now()) : undefined;
    const form = deviceForm({
      action: p.page,
      csrf: await session.csrf(req, tenantId),
      upn: user.upn,
      switchUrl: p.switchUser,
      userCode: code ?? v.userCode,
      request,
      error: v.error,
    });
    return html(reply, v.status ?? 200, form);
  };

/** Records an approver's decision on a code that is still pending; the answer is the page to show. */
const decide = async (
  ctx: CloudContext,
  tenantId: string,
  approver: User,
  form: z.infer<typeof DecisionForm>,
): Promise<{ done: string } | { error: string; status: number }> => {
  const code = normalizeUserCode(form.user_code);
  if (!code) return { error: 'The code has eight letters, like BCDF-GHJK.', status: 400 };
  const now = ctx.now();
  const row = await deviceCodeByUserCode(ctx.db, tenantId, code);
  if (row?.status !== 'pending' || row.expires_at <= now)
    return { error: 'The code is not valid or has expired.', status: 400 };
  const approved = form.action === 'approve';
  // An approver who typed the code has not seen who asks: show it, and let them approve again.
  if (approved && form.reviewed !== code)
    return { error: 'Check who is asking above, then approve again.', status: 200 };
  if (!(await decideDeviceCode(ctx.db, row.device_code_hash, approved, approver.upn)))
    return { error: 'The code is not valid or has expired.', status: 400 };
  await audit(
    ctx.db,
    {
      tenantId,
      actor: approver.upn,
      action: approved ? 'agent.device_approved' : 'agent.device_denied',
      target: code,
      detail: { hostname: row.hostname },
    },
    now,
  );
  ctx.log.info({ part: 'agent-approval', tenantId, hostname: row.hostname, approved }, 'device code decided');
  return { done: deviceDone(approved, row.hostname) };
};

const onPost =
  (ctx: CloudContext, session: ApproverSession, page: Page) =>
  async (req: FastifyRequest, reply: FastifyReply, tenantId: string) => {
    const form = DecisionForm.safeParse(req.body);
    const userCode = form.success ? form.data.user_code : undefined;
    // The session first: someone not signed in learns nothing, not even whether a code exists.
    const approver = await session.approver(req, tenantId);
    if (!approver)
      return page(req, reply, tenantId, { userCode, error: 'Sign in to approve or deny.', status: 401 });
    if (!canApprove(approver)) {
      ctx.log.warn({ part: 'agent-approval', tenantId, userId: approver.id }, 'device approval refused');
      return page(req, reply, tenantId, {});
    }
    if (!form.success) return page(req, reply, tenantId, { error: 'Enter the code.', status: 400 });
    if (!(await session.csrfValid(req, tenantId, form.data.csrf)))
      return page(req, reply, tenantId, { userCode, error: 'This page expired. Try again.', status: 403 });
    const out = await decide(ctx, tenantId, approver, form.data);
    if ('done' in out) return html(reply, 200, out.done);
    return page(req, reply, tenantId, { userCode, error: out.error, status: out.status });
  };

export const registerDeviceApproval = (app: FastifyInstance, ctx: CloudContext, oidc: Oidc): void => {
  const session = approverSession(app, ctx, oidc);
  const page = showPage(ctx, session);
  const post = onPost(ctx, session, page);
  /** The tenant named by the path, or null once the not-found page is sent. */
  const tenantOf = async (req: FastifyRequest, reply: FastifyReply): Promise<string | null> => {
    const p = TenantParam.safeParse(req.params);
    if (p.success && (await tenantExists(ctx.db, p.data.tenantId))) return p.data.tenantId;
    html(reply, 404, deviceNotFound());
    return null;
  };
  const query = (req: FastifyRequest) => {
    const q = CodeQuery.safeParse(req.query);
    return q.success ? q.data : {};
  };

  app.get('/:tenantId/agents/device', async (req, reply) => {
    const tenantId = await tenantOf(req, reply);
    return tenantId ? page(req, reply, tenantId, { userCode: query(req).user_code }) : reply;
  });
  app.post('/:tenantId/agents/device', async (req, reply) => {
    const tenantId = await tenantOf(req, reply);
    return tenantId ? post(req, reply, tenantId) : reply;
  });
  app.get('/:tenantId/agents/device/signin', async (req, reply) => {
    const tenantId = await tenantOf(req, reply);
    if (!tenantId) return reply;
    const q = query(req);
    const userCode = q.user_code ? (normalizeUserCode(q.user_code) ?? undefined) : undefined;
    return session.signIn(reply, tenantId, { userCode, prompt: q.prompt });
  });
  app.get('/:tenantId/agents/device/callback', async (req, reply) => {
    const tenantId = await tenantOf(req, reply);
    if (!tenantId) return reply;
    const out = await session.finish(req, reply, tenantId);
    if ('error' in out) return page(req, reply, tenantId, { error: out.error, status: 400 });
    const back = out.userCode ? `?user_code=${encodeURIComponent(out.userCode)}` : '';
    return reply.redirect(`${paths(tenantId).page}${back}`, 303);
  });
};
