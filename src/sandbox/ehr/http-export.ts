import { createReadStream } from 'node:fs';
import type { Group } from '@medplum/fhirtypes';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FHIR_PREFIX, type SandboxAddress } from './address.ts';
import type { BulkExportManager } from './bulk-export.ts';
import { type ExportLevel, parseExportRequest } from './bulk-params.ts';
import type { PatientCompartment } from './compartment.ts';
import type { FhirDefinitions } from './definitions.ts';
import { sendOutcome } from './fhir-reply.ts';
import { requireBearer, requireScopes } from './http-auth.ts';
import type { SandboxRepository } from './repository.ts';
import { findScope } from './scopes.ts';
import type { AccessToken, SmartAuth } from './smart-auth.ts';

export interface ExportRoutesContext {
  readonly auth: SmartAuth;
  readonly address: SandboxAddress;
  readonly repo: SandboxRepository;
  readonly defs: FhirDefinitions;
  readonly compartment: PatientCompartment;
  readonly exports: BulkExportManager;
  readonly now: () => Date;
}

export const EXPORT_STATUS_PATH = `${FHIR_PREFIX}/bulkstatus`;
export const EXPORT_FILES_PATH = `${FHIR_PREFIX}/bulkfiles`;

type Query = Record<string, string | string[] | undefined>;

/**
 * Bulk Data `$export` (system, Patient, Group), the status endpoint (poll, cancel) and the output
 * files. All need a bearer token; status and files only answer the client that started the job.
 */
export function registerExportRoutes(app: FastifyInstance, ctx: ExportRoutesContext): void {
  app.get<{ Querystring: Query }>(`${FHIR_PREFIX}/$export`, (request, reply) =>
    kickOff(ctx, request, reply, { kind: 'system' }),
  );
  app.get<{ Querystring: Query }>(`${FHIR_PREFIX}/Patient/$export`, (request, reply) =>
    kickOff(ctx, request, reply, { kind: 'patient' }),
  );
  app.get<{ Querystring: Query; Params: { id: string } }>(
    `${FHIR_PREFIX}/Group/:id/$export`,
    (request, reply) => kickOff(ctx, request, reply, { kind: 'group', groupId: request.params.id }),
  );

  app.get<{ Params: { jobId: string } }>(`${EXPORT_STATUS_PATH}/:jobId`, async (request, reply) => {
    const token = requireBearer(ctx.auth, request, reply);
    if (!token) return reply;
    const job = ctx.exports.get(request.params.jobId);
    if (!job || job.clientId !== token.clientId) return sendOutcome(reply, 404, 'No such export job.');
    switch (job.state.kind) {
      case 'running': {
        const { scanned, total } = job.state;
        const percent = total === 0 ? 0 : Math.floor((scanned / total) * 100);
        return reply
          .code(202)
          .header('x-progress', `${percent}% (${scanned} of ${total} resources scanned)`)
          .header('retry-after', '1')
          .send();
      }
      case 'completed':
        return reply.code(200).type('application/json').send(job.state.manifest);
      case 'failed':
        return sendOutcome(reply, 500, job.state.message);
    }
  });

  app.delete<{ Params: { jobId: string } }>(`${EXPORT_STATUS_PATH}/:jobId`, async (request, reply) => {
    const token = requireBearer(ctx.auth, request, reply);
    if (!token) return reply;
    const job = ctx.exports.get(request.params.jobId);
    if (!job || job.clientId !== token.clientId) return sendOutcome(reply, 404, 'No such export job.');
    await ctx.exports.cancel(job.id);
    return sendOutcome(reply, 202, 'The export job was cancelled and its files deleted.');
  });

  app.get<{ Params: { jobId: string; name: string } }>(
    `${EXPORT_FILES_PATH}/:jobId/:name`,
    async (request, reply) => {
      const token = requireBearer(ctx.auth, request, reply);
      if (!token) return reply;
      const job = ctx.exports.get(request.params.jobId);
      const path =
        job?.clientId === token.clientId ? ctx.exports.filePath(job.id, request.params.name) : undefined;
      if (!path) return sendOutcome(reply, 404, 'No such export file.');
      return reply.code(200).type('application/fhir+ndjson').send(createReadStream(path));
    },
  );
}

async function kickOff(
  ctx: ExportRoutesContext,
  request: FastifyRequest<{ Querystring: Query }>,
  reply: FastifyReply,
  level: ExportLevel,
): Promise<FastifyReply> {
  const token = requireBearer(ctx.auth, request, reply);
  if (!token) return reply;
  const parsed = parseExportRequest(request.query, request.headers.prefer, ctx.defs.isResourceType);
  if (!parsed.ok) return sendOutcome(reply, 400, parsed.message);
  const { params } = parsed;

  let types: string[];
  if (params.types) {
    if (
      !requireScopes(
        token,
        params.types.map((t) => [t, 'r'] as const),
        reply,
      )
    )
      return reply;
    types = [...params.types];
  } else {
    const candidates = level.kind === 'system' ? ctx.repo.recordedTypes() : ctx.compartment.types();
    types = candidates.filter((t) => ctx.repo.recordCount(t) > 0 && readable(token, t)).sort();
  }

  let groupPatientIds: Set<string> | undefined;
  if (level.kind === 'group') {
    const members = await groupMembers(ctx.repo, level.groupId);
    if (members.kind !== 'ok') {
      const status = members.kind === 'gone' ? 410 : 404;
      return sendOutcome(
        reply,
        status,
        `Group/${level.groupId} ${members.kind === 'gone' ? 'was deleted' : 'does not exist'}.`,
      );
    }
    groupPatientIds = members.patientIds;
  }

  const job = ctx.exports.start({
    level,
    types,
    ...(params.since ? { since: params.since } : {}),
    transactionTime: ctx.now(),
    requestUrl: `${ctx.address.origin}${request.url}`,
    clientId: token.clientId,
    ...(groupPatientIds ? { groupPatientIds } : {}),
  });
  reply.header('content-location', `${ctx.address.origin}${EXPORT_STATUS_PATH}/${job.id}`);
  return sendOutcome(reply, 202, 'The export has started; poll the Content-Location URL for its status.');
}

function readable(token: AccessToken, resourceType: string): boolean {
  return findScope(token.scopes, resourceType, 'r') !== undefined;
}

async function groupMembers(
  repo: SandboxRepository,
  groupId: string,
): Promise<{ kind: 'ok'; patientIds: Set<string> } | { kind: 'missing' } | { kind: 'gone' }> {
  if (repo.tombstone('Group', groupId)) return { kind: 'gone' };
  let group: Group;
  try {
    group = await repo.readResource<Group>('Group', groupId);
  } catch {
    return { kind: 'missing' };
  }
  const patientIds = new Set<string>();
  for (const member of group.member ?? []) {
    if (member.inactive) continue;
    const id = /(?:^|\/)Patient\/([^/]+)$/.exec(member.entity.reference ?? '')?.[1];
    if (id) patientIds.add(id);
  }
  return { kind: 'ok', patientIds };
}
