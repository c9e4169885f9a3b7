import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CrmContext } from './context.ts';
import { sfError } from './errors.ts';

/** `vNN.N`, as Salesforce names its API versions. */
export const VERSION_PATTERN = /^v\d{2}\.\d$/;

/**
 * The gate in front of every REST API route (`/services/data/vNN.N/…`), added to the encapsulated
 * instance that holds them: the version must be well formed, the bearer session valid (401
 * INVALID_SESSION_ID otherwise), and the daily allocation not spent (403 REQUEST_LIMIT_EXCEEDED).
 * Every answer to an authenticated call carries `Sforce-Limit-Info: api-usage=N/M`.
 */
export function installApiGuard(api: FastifyInstance, ctx: CrmContext): void {
  const counted = new WeakSet<FastifyRequest>();

  api.addHook('onRequest', async (request, reply) => {
    const version = (request.params as { version?: string }).version ?? '';
    if (!VERSION_PATTERN.test(version)) {
      return reply.code(404).send([sfError('NOT_FOUND', 'The requested resource does not exist')]);
    }
    const session = ctx.oauth.check(request.headers.authorization);
    if (!session.ok) {
      return reply
        .code(401)
        .header('www-authenticate', 'Token')
        .send([{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' }]);
    }
    counted.add(request);
    const quota = ctx.quota.consume();
    if (!quota.allowed) {
      return reply
        .code(403)
        .send([{ message: 'TotalRequests Limit exceeded.', errorCode: 'REQUEST_LIMIT_EXCEEDED' }]);
    }
    return undefined;
  });

  api.addHook('onSend', async (request, reply, payload) => {
    if (counted.has(request)) {
      const { used, max } = ctx.quota.state();
      reply.header('sforce-limit-info', `api-usage=${used}/${max}`);
    }
    return payload;
  });
}
