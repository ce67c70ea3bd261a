/**
 * OpenAPI 3.1 document of the admin API, generated from the same route table and zod schemas; the
 * schemas' JSON Schema comes from zod's own z.toJSONSchema, so only the document's frame is ours.
 *
 * Not @fastify/swagger with fastify-type-provider-zod (which does support zod 4): with it fastify
 * validates params, query and body before any hook of the route's own, so a caller without a
 * token would learn the schema from a 400 where the API answers 401/403 first (admin-isolation
 * tests that order for every route), and its validation errors would take another detail shape
 * than store/util.ts's `parse`. Its document is also one per app, where this one is per tenant
 * (servers and the OAuth URLs name the tenant) and carries each route's permission and roles.
 * Moving would mean rewriting how every admin route is registered, for a frame of ~100 lines.
 */
import { z } from 'zod';
import { ADMIN_CLIENT_ID } from '../oidc/admin-client.ts';
import type { Permission, RouteDef } from './api.ts';

const PERMISSION_ROLES: Record<Permission, string[]> = {
  read: ['global_admin', 'hybrid_identity_admin', 'user_admin', 'reader'],
  hybrid: ['global_admin', 'hybrid_identity_admin'],
  users: ['global_admin', 'user_admin'],
  global: ['global_admin'],
};

const json = (s: z.ZodType, io: 'input' | 'output') => {
  const { $schema: _, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return rest;
};

const ErrorBody = z.object({ error: z.string(), message: z.string(), detail: z.unknown().optional() });

const ERRORS = {
  '400': 'validation_failed (or another catalog error)',
  '401': 'unauthorized: no valid bearer token of this tenant',
  '403': 'forbidden: the role does not allow it, or the token belongs to another tenant',
  '404': 'not_found',
  '409': 'conflict, no_active_agent, lockout_weaker_than_directory',
};

export const openApiDocument = (routes: readonly RouteDef[], publicUrl: string, tenantId: string) => {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorRef = { $ref: '#/components/schemas/Error' };
  for (const r of routes) {
    const path = r.path.replace(/:(\w+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [where, schema] of [
      ['path', r.params],
      ['query', r.query],
    ] as const) {
      if (!schema) continue;
      const js = json(schema, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, s] of Object.entries(js.properties ?? {})) {
        parameters.push({
          name,
          in: where,
          required: where === 'path' || (js.required ?? []).includes(name),
          schema: s,
        });
      }
    }
    const responses: Record<string, unknown> = {
      '200': r.produces
        ? { description: 'OK', content: { [r.produces]: { schema: { type: 'string', format: 'binary' } } } }
        : {
            description: 'OK',
            content: { 'application/json': { schema: r.response ? json(r.response, 'output') : {} } },
          },
    };
    for (const [code, description] of Object.entries(ERRORS)) {
      responses[code] = { description, content: { 'application/json': { schema: errorRef } } };
    }
    paths[path] ??= {};
    paths[path][r.method.toLowerCase()] = {
      summary: r.summary,
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[/_-](\w)/g, (_, c: string) => c.toUpperCase())}`,
      'x-permission': r.permission,
      'x-roles': PERMISSION_ROLES[r.permission],
      parameters,
      ...(r.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: json(r.body, 'input') } },
            },
          }
        : {}),
      responses,
    };
  }
  const issuer = `${publicUrl}/${tenantId}/v2.0`;
  return {
    openapi: '3.1.0',
    info: {
      title: 'Gatehouse admin API',
      version: '1',
      description:
        "Tenant administration. Authenticate with a bearer access token issued by the tenant's own OIDC provider to the admin center client. Roles: global_admin (everything), hybrid_identity_admin (agents, sign-in settings, lockout, sync; read all), user_admin (unlock, reset cloud passwords; read all), reader (read only). Every change is written to the audit log.",
    },
    servers: [{ url: `${publicUrl}/${tenantId}/api/v1` }],
    security: [{ bearer: [] }, { adminCenter: ['openid'] }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer' },
        adminCenter: {
          type: 'oauth2',
          description: `Public client ${ADMIN_CLIENT_ID}, authorization code with PKCE (S256).`,
          flows: {
            authorizationCode: {
              authorizationUrl: `${issuer}/auth`,
              tokenUrl: `${issuer}/token`,
              scopes: { openid: 'sign in', profile: 'name and UPN' },
            },
          },
        },
      },
      schemas: { Error: json(ErrorBody, 'output') },
    },
    paths,
  };
};
