import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';
import type { FastifyReply } from 'fastify';

/** How the EHR sandbox answers over HTTP: FHIR JSON bodies, and OperationOutcomes for every error. */

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

type IssueCode = OperationOutcomeIssue['code'];

/** The OperationOutcome issue code that fits an HTTP status. */
export function issueCodeFor(status: number): IssueCode {
  if (status === 401) return 'login';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 410) return 'deleted';
  if (status === 412) return 'conflict';
  if (status === 429) return 'throttled';
  if (status === 503 || status === 504) return 'transient';
  if (status >= 500) return 'exception';
  if (status >= 400) return 'invalid';
  return 'informational';
}

export function operationOutcome(
  status: number,
  text: string,
  code: IssueCode = issueCodeFor(status),
): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: status >= 400 ? 'error' : 'information', code, details: { text } }],
  };
}

export function sendFhir(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).type(FHIR_JSON).send(JSON.stringify(body));
}

export function sendOutcome(
  reply: FastifyReply,
  status: number,
  text: string,
  code: IssueCode = issueCodeFor(status),
): FastifyReply {
  return sendFhir(reply, status, operationOutcome(status, text, code));
}

/** The `errorBody` of the shared sandbox server: injected faults answer with an OperationOutcome. */
export function faultOutcome(status: number, message: string, code: string): OperationOutcome {
  return operationOutcome(status, `${message} (${code})`);
}
