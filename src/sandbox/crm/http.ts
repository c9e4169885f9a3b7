import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { SfHttpError, sfError } from './errors.ts';
import { recordUrl } from './present.ts';
import type { WriteOutcome } from './records.ts';

/**
 * HTTP plumbing of the CRM sandbox: form bodies (the token endpoint), and every failure answered in
 * the shape the real endpoint uses — Salesforce error arrays for the REST API, OAuth error objects for
 * the token endpoint, plain JSON for the control routes.
 */
export function installHttp(app: FastifyInstance): void {
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    },
  );

  app.setErrorHandler((error: FastifyError | SfHttpError | Error, request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    if (error instanceof SfHttpError) return reply.code(error.status).send(error.errors);
    const { status, code, message } = classify(error);
    if (path.startsWith('/__sandbox')) return reply.code(status).send({ error: message });
    if (path.startsWith('/services/oauth2')) {
      return reply.code(status).send({ error: 'invalid_request', error_description: message });
    }
    return reply.code(status).send([sfError(code, message)]);
  });

  app.setNotFoundHandler((request, reply) => {
    if (request.url.startsWith('/__sandbox')) return reply.code(404).send({ error: 'no such control route' });
    if (request.url.startsWith('/services/oauth2')) {
      return reply.code(404).send({ error: 'not_found', error_description: 'no such endpoint' });
    }
    return reply.code(404).send([sfError('NOT_FOUND', 'The requested resource does not exist')]);
  });
}

function classify(error: FastifyError | Error): { status: number; code: string; message: string } {
  const fastifyCode = 'code' in error ? String(error.code) : '';
  switch (fastifyCode) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: 'JSON_PARSER_ERROR', message: 'The request body is not valid JSON' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
        message: 'Content type not supported; send application/json',
      };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'REQUEST_ENTITY_TOO_LARGE', message: 'The request body is too large' };
    default:
      break;
  }
  const status = 'statusCode' in error && typeof error.statusCode === 'number' ? error.statusCode : 500;
  if (status >= 400 && status < 500) return { status, code: 'INVALID_INPUT', message: error.message };
  return {
    status: 500,
    code: 'UNKNOWN_EXCEPTION',
    message: 'An unexpected error occurred in the CRM sandbox.',
  };
}

/** Answers a single-record write the way the sObject routes do. */
export function sendOutcome(
  reply: FastifyReply,
  outcome: WriteOutcome,
  version: string,
  object: string,
): FastifyReply {
  switch (outcome.kind) {
    case 'created':
      return reply.code(201).send({ id: outcome.id, success: true, errors: [], created: true });
    case 'updated':
    case 'deleted':
      return reply.code(204).send();
    case 'ambiguous':
      return reply.code(300).send(outcome.ids.map((id) => recordUrl(version, object, id)));
    case 'rejected':
      return reply.code(outcome.status).send(outcome.errors);
  }
}
