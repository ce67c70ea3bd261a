/**
 * Agent registration on the main HTTPS app: a one-time token or an RFC 8628 device code proves an
 * administrator's approval; the CSR is then signed by the tenant CA under a fresh agent id. The
 * device page lets a cloud-only Global or Hybrid Identity Administrator approve or deny a code.
 */
import { createHash, createHmac, randomBytes, randomInt, randomUUID } from 'node:crypto';
import formbody from '@fastify/formbody';
import {
  catalog,
  DeviceAuthorizeRequest,
  GatehouseError,
  RegisterRequest,
  type RegisterResponse,
  signAgentCsr,
  TenantId,
} from '@gatehouse/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { CloudContext } from '../context.ts';
import type { Authenticator } from '../signin/types.ts';
import { assertAgentCapacity, registerAgent } from '../store/agents.ts';
import { audit } from '../store/audit.ts';
import {
  decideDeviceCode,
  deviceCodeByHash,
  deviceCodeByUserCode,
  findPendingDeviceCode,
  insertDeviceCode,
  notePoll,
  useApprovedDeviceCode,
} from '../store/device-codes.ts';
import { consumeRegistrationToken, peekRegistrationToken } from '../store/registration-tokens.ts';
import { getTenant, getTenantSecrets, tenantExists } from '../store/tenants.ts';
import { isUniqueViolation } from '../store/util.ts';
import { pageHeaders } from '../web/page.ts';
import { type DeviceLimiter, registerDeviceLimits } from './device-limits.ts';
import {
  CSRF_COOKIE,
  csrfToken,
  csrfValid,
  deviceDone,
  deviceForm,
  deviceNotFound,
  newNonce,
  normalizeUserCode,
  USER_CODE_ALPHABET,
} from './device-page.ts';

export const DEVICE_CODE_TTL_S = 600;
export const DEVICE_POLL_INTERVAL_S = 5;
/** Timers and networks jitter; a poll this much early is still on time. */
const POLL_SLACK_MS = 250;
const APPROVER_ROLES = new Set(['global_admin', 'hybrid_identity_admin']);

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

const parseBody = <T>(schema: z.ZodType<T>, body: unknown): T => {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  throw new GatehouseError(
    'validation_failed',
    r.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
  );
};

const newUserCode = (): string => {
  let s = '';
  for (let i = 0; i < 8; i++) s += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return `${s.slice(0, 4)}-${s.slice(4)}`;
};

const DeviceForm = z.object({
  csrf: z.string().max(128),
  user_code: z.string().max(32),
  username: z.string().min(1).max(256),
  password: z.string().min(1).max(1024),
  action: z.enum(['approve', 'deny']),
  /** The code whose request details the form showed (absent when the approver typed the code). */
  reviewed: z.string().max(32).optional(),
});
const TenantParam = z.object({ tenantId: TenantId });

export interface RegistrationDeps {
  ctx: CloudContext;
  authenticator: Authenticator;
}

export const registerRegistrationRoutes = (
  app: FastifyInstance,
  { ctx, authenticator }: RegistrationDeps,
): void => {
  const log = ctx.log.child({ part: 'agent-registration' });
  const { db } = ctx;

  /** RFC 8628 polling: each answer but "approved" is an error the agent acts on. */
  const redeemDeviceCode = async (
    deviceCode: string,
    now: number,
  ): Promise<{ tenantId: string; approvedBy: string }> => {
    const hash = sha256(deviceCode);
    const row = await deviceCodeByHash(db, hash);
    if (!row || row.status === 'used') throw new GatehouseError('registration_token_invalid');
    if (row.expires_at <= now) throw new GatehouseError('expired_token');
    if (row.status === 'denied') throw new GatehouseError('access_denied');
    if (row.status === 'pending') {
      const tooFast =
        row.last_poll_at !== null && now - row.last_poll_at < DEVICE_POLL_INTERVAL_S * 1000 - POLL_SLACK_MS;
      await notePoll(db, hash, now);
      throw new GatehouseError(tooFast ? 'slow_down' : 'authorization_pending');
    }
    // A full tenant is refused before the approval is spent.
    await assertAgentCapacity(db, row.tenant_id);
    // Conditional update: two polls racing with one approved code cannot both register.
    if (!(await useApprovedDeviceCode(db, hash, now))) throw new GatehouseError('registration_token_invalid');
    return { tenantId: row.tenant_id, approvedBy: row.approved_by ?? 'unknown' };
  };

  const register = async (req: FastifyRequest): Promise<z.input<typeof RegisterResponse>> => {
    const body = parseBody(RegisterRequest, req.body);
    const now = ctx.now();
    // A token is only looked at here; it is used up in the same transaction as the insert, after
    // the agent limit check, so a refused registration leaves it usable.
    const proof = body.token
      ? { tenantId: await peekRegistrationToken(db, body.token, now), actor: 'registration-token' }
      : await redeemDeviceCode(body.deviceCode!, now).then((r) => ({
          tenantId: r.tenantId,
          actor: r.approvedBy,
        }));
    const { tenantId } = proof;
    await assertAgentCapacity(db, tenantId);
    const secrets = await getTenantSecrets(ctx, tenantId);
    const agentId = randomUUID();
    let signed: Awaited<ReturnType<typeof signAgentCsr>>;
    try {
      signed = await signAgentCsr(
        { certPem: secrets.caCertPem, keyPem: secrets.caKeyPem },
        body.csr,
        { agentId, tenantId },
        ctx.config.agentCertDays,
      );
    } catch (err) {
      throw new GatehouseError('validation_failed', [{ path: 'csr', message: 'not a valid CSR' }], {
        cause: err,
      });
    }
    await registerAgent(
      db,
      {
        id: agentId,
        tenantId,
        hostname: body.hostname,
        version: body.version,
        certSerial: signed.serial,
        certNotAfter: signed.notAfter.getTime(),
        hpkePublicKey: body.hpkePublicKey,
        externalIp: req.ip,
      },
      now,
      {
        beforeInsert: async (trx) => {
          if (body.token && (await consumeRegistrationToken(trx, body.token, now)) !== tenantId) {
            throw new GatehouseError('registration_token_invalid');
          }
        },
      },
    );
    await audit(
      db,
      {
        tenantId,
        actor: proof.actor,
        action: 'agent.registered',
        target: agentId,
        detail: {
          hostname: body.hostname,
          version: body.version,
          ip: req.ip,
          via: body.token ? 'token' : 'device_code',
        },
      },
      now,
    );
    log.info({ tenantId, agentId, hostname: body.hostname }, 'agent registered');
    return {
      agentId,
      tenantId,
      certificate: signed.certPem,
      tenantCa: secrets.caCertPem,
      gatewayUrl: ctx.config.gatewayUrl,
    };
  };

  const authorize = async (req: FastifyRequest, limits: DeviceLimiter) => {
    // Counted before anything else, so even malformed requests cost their sender.
    await limits.byAddress(req);
    const body = parseBody(DeviceAuthorizeRequest, req.body);
    await getTenant(db, body.tenantId);
    const now = ctx.now();
    await limits.byTenant(req, db, body.tenantId, now);
    const deviceCode = randomBytes(32).toString('base64url');
    for (let attempt = 0; ; attempt++) {
      const userCode = newUserCode();
      try {
        await insertDeviceCode(
          db,
          {
            deviceCodeHash: sha256(deviceCode),
            userCode,
            tenantId: body.tenantId,
            hostname: body.hostname,
            requesterIp: req.ip,
            expiresAt: now + DEVICE_CODE_TTL_S * 1000,
          },
          now,
        );
      } catch (err) {
        if (isUniqueViolation(err) && attempt < 5) continue;
        throw err;
      }
      const uri = `${ctx.config.publicUrl}/${encodeURIComponent(body.tenantId)}/agents/device`;
      log.info({ tenantId: body.tenantId, hostname: body.hostname, ip: req.ip }, 'device code issued');
      return {
        device_code: deviceCode,
        user_code: userCode,
        verification_uri: uri,
        verification_uri_complete: `${uri}?user_code=${userCode}`,
        expires_in: DEVICE_CODE_TTL_S,
        interval: DEVICE_POLL_INTERVAL_S,
      };
    }
  };

  /** The CSRF key is derived from the tenant's cookie key so every cloud node agrees on it. */
  const csrfKey = async (tenantId: string): Promise<Buffer> => {
    const { cookieKeys } = await getTenantSecrets(ctx, tenantId);
    return createHmac('sha256', cookieKeys[0] ?? '')
      .update('gatehouse agents-device csrf')
      .digest();
  };

  const showForm = async (
    req: FastifyRequest,
    reply: FastifyReply,
    tenantId: string,
    extra: { userCode?: string; username?: string; error?: string; status?: number },
  ) => {
    const key = await csrfKey(tenantId);
    let nonce = req.cookies[CSRF_COOKIE];
    if (!nonce || !/^[A-Za-z0-9_-]{32}$/.test(nonce)) {
      nonce = newNonce();
      reply.setCookie(CSRF_COOKIE, nonce, { path: '/', secure: true, httpOnly: true, sameSite: 'strict' });
    }
    const code = extra.userCode ? normalizeUserCode(extra.userCode) : null;
    const request = code ? await findPendingDeviceCode(db, tenantId, code, ctx.now()) : undefined;
    return reply
      .code(extra.status ?? 200)
      .headers(pageHeaders())
      .send(
        deviceForm({
          action: `/${encodeURIComponent(tenantId)}/agents/device`,
          csrf: csrfToken(key, nonce),
          userCode: code ?? extra.userCode,
          request,
          username: extra.username,
          error: extra.error,
        }),
      );
  };

  const notFound = (reply: FastifyReply) => reply.code(404).headers(pageHeaders()).send(deviceNotFound());

  const decide = async (req: FastifyRequest, reply: FastifyReply, tenantId: string) => {
    const form = DeviceForm.safeParse(req.body);
    if (!form.success)
      return showForm(req, reply, tenantId, {
        error: 'Fill in the code, your user name and your password.',
        status: 400,
      });
    const f = form.data;
    const again = (error: string, status: number) =>
      showForm(req, reply, tenantId, { userCode: f.user_code, username: f.username, error, status });
    if (!csrfValid(await csrfKey(tenantId), req.cookies[CSRF_COOKIE], f.csrf)) {
      return again('This page expired. Enter the details again.', 403);
    }
    const code = normalizeUserCode(f.user_code);
    if (!code) return again('The code has eight letters, like BCDF-GHJK.', 400);
    // Credentials first: without them nobody learns whether a code exists.
    const result = await authenticator.authenticate({
      tenantId,
      username: f.username,
      password: f.password,
      method: 'browser',
      clientIp: req.ip,
      log: req.log,
    });
    if (!result.ok) {
      const entry = catalog[result.code];
      return again(entry.shown ? entry.message : 'Sign-in failed. Try again.', 401);
    }
    const { user } = result;
    if (user.source !== 'cloud' || !user.roles.some((r) => APPROVER_ROLES.has(r))) {
      log.warn({ tenantId, userId: user.id }, 'device approval refused: not an approver');
      return again(
        'Only a cloud-only Global Administrator or Hybrid Identity Administrator can approve agents.',
        403,
      );
    }
    const now = ctx.now();
    const row = await deviceCodeByUserCode(db, tenantId, code);
    if (row?.status !== 'pending' || row.expires_at <= now)
      return again('The code is not valid or has expired.', 400);
    const approved = f.action === 'approve';
    // An approver who typed the code has not seen who asks: show it, and let them approve again.
    if (approved && f.reviewed !== code) {
      return again('Check who is asking below, then enter your password and approve again.', 200);
    }
    if (!(await decideDeviceCode(db, row.device_code_hash, approved, user.upn)))
      return again('The code is not valid or has expired.', 400);
    await audit(
      db,
      {
        tenantId,
        actor: user.upn,
        action: approved ? 'agent.device_approved' : 'agent.device_denied',
        target: code,
        detail: { hostname: row.hostname },
      },
      now,
    );
    log.info({ tenantId, hostname: row.hostname, approved }, 'device code decided');
    return reply.headers(pageHeaders()).send(deviceDone(approved, row.hostname));
  };

  app.register(async (scope) => {
    if (!scope.hasContentTypeParser('application/x-www-form-urlencoded')) await scope.register(formbody);
    const limits = await registerDeviceLimits(scope);
    scope.post('/agent/v1/register', (req, reply) =>
      register(req).then((b) => reply.header('cache-control', 'no-store').send(b)),
    );
    scope.post('/agent/v1/device/authorize', (req, reply) =>
      authorize(req, limits).then((b) => reply.header('cache-control', 'no-store').send(b)),
    );
    scope.get('/:tenantId/agents/device', async (req, reply) => {
      const p = TenantParam.safeParse(req.params);
      if (!p.success || !(await tenantExists(db, p.data.tenantId))) return notFound(reply);
      const q = req.query as { user_code?: unknown };
      return showForm(req, reply, p.data.tenantId, {
        userCode: typeof q.user_code === 'string' ? q.user_code.slice(0, 32) : undefined,
      });
    });
    scope.post('/:tenantId/agents/device', async (req, reply) => {
      const p = TenantParam.safeParse(req.params);
      if (!p.success || !(await tenantExists(db, p.data.tenantId))) return notFound(reply);
      return decide(req, reply, p.data.tenantId);
    });
  });
};
