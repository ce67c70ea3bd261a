/**
 * Agent registration on the main HTTPS app (POST /agent/v1/register): a one-time registration
 * token, or a device code an administrator approved (device-flow.ts), proves the tenant's consent;
 * the agent's CSR is then signed by the tenant CA under a fresh agent id.
 */
import { randomUUID } from 'node:crypto';
import { GatehouseError, RegisterRequest, type RegisterResponse, signAgentCsr } from '@gatehouse/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { CloudContext } from '../context.ts';
import { assertAgentCapacity, registerAgent } from '../store/agents.ts';
import { audit } from '../store/audit.ts';
import { consumeRegistrationToken, peekRegistrationToken } from '../store/registration-tokens.ts';
import { getTenantSecrets } from '../store/tenants.ts';
import { parse } from '../store/util.ts';
import { redeemDeviceCode, registerDeviceFlowRoutes } from './device-flow.ts';

const signCsr = async (
  secrets: { caCertPem: string; caKeyPem: string },
  csr: string,
  subject: { agentId: string; tenantId: string },
  days: number,
) => {
  try {
    return await signAgentCsr({ certPem: secrets.caCertPem, keyPem: secrets.caKeyPem }, csr, subject, days);
  } catch (err) {
    throw new GatehouseError('validation_failed', [{ path: 'csr', message: 'not a valid CSR' }], {
      cause: err,
    });
  }
};

const register = async (
  ctx: CloudContext,
  req: FastifyRequest,
): Promise<z.input<typeof RegisterResponse>> => {
  const { db } = ctx;
  const body = parse(RegisterRequest, req.body);
  const now = ctx.now();
  // A token is only looked at here; it is used up in the same transaction as the insert, after
  // the agent limit check, so a refused registration leaves it usable.
  const proof = body.token
    ? { tenantId: await peekRegistrationToken(db, body.token, now), actor: 'registration-token' }
    : await redeemDeviceCode(db, body.deviceCode!, now).then((r) => ({
        tenantId: r.tenantId,
        actor: r.approvedBy,
      }));
  const { tenantId } = proof;
  await assertAgentCapacity(db, tenantId);
  const secrets = await getTenantSecrets(ctx, tenantId);
  const agentId = randomUUID();
  const signed = await signCsr(secrets, body.csr, { agentId, tenantId }, ctx.config.agentCertDays);
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
  const via = body.token ? 'token' : 'device_code';
  const detail = { hostname: body.hostname, version: body.version, ip: req.ip, via };
  await audit(db, { tenantId, actor: proof.actor, action: 'agent.registered', target: agentId, detail }, now);
  ctx.log.info(
    { part: 'agent-registration', tenantId, agentId, hostname: body.hostname },
    'agent registered',
  );
  return {
    agentId,
    tenantId,
    certificate: signed.certPem,
    tenantCa: secrets.caCertPem,
    gatewayUrl: ctx.config.gatewayUrl,
  };
};

/** Registration and device authorization, in one scope that holds the device flow's limits. */
export const registerRegistrationRoutes = (app: FastifyInstance, ctx: CloudContext): void => {
  app.register(async (scope) => {
    await registerDeviceFlowRoutes(scope, ctx);
    scope.post('/agent/v1/register', (req, reply) =>
      register(ctx, req).then((b) => reply.header('cache-control', 'no-store').send(b)),
    );
  });
};
