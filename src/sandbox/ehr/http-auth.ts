import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FHIR_PREFIX, type SandboxAddress, TOKEN_PATH } from './address.ts';
import { smartConfiguration } from './capability.ts';
import { sendOutcome } from './fhir-reply.ts';
import { describeRequired, findScope, type Permission } from './scopes.ts';
import type { AccessToken, SmartAuth } from './smart-auth.ts';

export interface AuthRoutesContext {
  readonly auth: SmartAuth;
  readonly address: SandboxAddress;
}

/** `POST /auth/token` (SMART Backend Services) and the public `.well-known/smart-configuration`. */
export function registerAuthRoutes(app: FastifyInstance, ctx: AuthRoutesContext): void {
  app.post(TOKEN_PATH, async (request, reply) => {
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
    const form = request.body;
    if (!request.headers['content-type']?.startsWith('application/x-www-form-urlencoded') || !isForm(form)) {
      return reply.code(400).send({
        error: 'invalid_request',
        error_description: 'the token request must be application/x-www-form-urlencoded',
      });
    }
    const result = await ctx.auth.token(form);
    if (!result.ok) {
      return reply.code(result.status).send({ error: result.error, error_description: result.description });
    }
    return reply.code(200).send(result.body);
  });

  app.get(`${FHIR_PREFIX}/.well-known/smart-configuration`, async (_request, reply) =>
    reply.type('application/json').send(smartConfiguration(ctx.address)),
  );
}

/**
 * Resolves the request's bearer token, or answers 401 (with `WWW-Authenticate` and an
 * OperationOutcome) and returns undefined.
 */
export function requireBearer(
  auth: SmartAuth,
  request: FastifyRequest,
  reply: FastifyReply,
): AccessToken | undefined {
  const result = auth.authenticate(request.headers.authorization);
  if (result.ok) return result.token;
  reply.header(
    'www-authenticate',
    `Bearer realm="sluice-ehr-sandbox", error="invalid_token", error_description="${result.description}"`,
  );
  sendOutcome(reply, 401, `Unauthorized: ${result.description}.`);
  return undefined;
}

/** A resource type and the permission an interaction needs on it. */
export type Need = readonly [resourceType: string, permission: Permission];

/** Checks that the token's scopes cover every need, or answers 403 naming the first uncovered one. */
export function requireScopes(token: AccessToken, needs: readonly Need[], reply: FastifyReply): boolean {
  for (const [resourceType, permission] of needs) {
    if (findScope(token.scopes, resourceType, permission)) continue;
    sendOutcome(
      reply,
      403,
      `Forbidden: the access token's scopes do not allow this interaction on ${resourceType} ` +
        `(needs ${describeRequired(resourceType, permission)}).`,
    );
    return false;
  }
  return true;
}

function isForm(value: unknown): value is Record<string, string | undefined> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.values(value as Record<string, unknown>).every((v) => typeof v === 'string')
  );
}
