import { getStatus, normalizeOperationOutcome } from '@medplum/core';
import type { OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FhirDefinitions } from './definitions.ts';
import { sendFhir, sendOutcome } from './fhir-reply.ts';
import type { SandboxRepository } from './repository.ts';
import { type ImportItem, prepareGroup, storeResources } from './seed.ts';

export interface ControlRoutesContext {
  readonly repo: SandboxRepository;
  readonly defs: FhirDefinitions;
}

export const CONTROL_PREFIX = '/__sandbox';

/**
 * Test and demo controls, without authentication but for loopback clients only: write, add and delete
 * resources directly (bypassing scopes), and read the repository's counts. Fault injection and the
 * request log (`/__sandbox/faults`, `/__sandbox/requests`) come from the shared sandbox server.
 */
export function registerControlRoutes(app: FastifyInstance, ctx: ControlRoutesContext): void {
  const { repo, defs } = ctx;

  app.get(`${CONTROL_PREFIX}/stats`, async (request, reply) => {
    if (!fromLoopback(request, reply)) return reply;
    return reply.send(repo.stats());
  });

  /** Create-or-update with this body: always a new version. */
  app.put<{ Params: { type: string; id: string } }>(
    `${CONTROL_PREFIX}/resources/:type/:id`,
    async (request, reply) => {
      if (!fromLoopback(request, reply)) return reply;
      const { type, id } = request.params;
      if (!defs.isResourceType(type)) return sendOutcome(reply, 404, 'Unknown resource type.');
      const body = request.body;
      if (!isObject(body)) return sendOutcome(reply, 400, 'The body must be a FHIR resource.');
      if (body.resourceType !== undefined && body.resourceType !== type) {
        return sendOutcome(reply, 400, `The body's resourceType does not match ${type}.`);
      }
      if (body.id !== undefined && body.id !== id)
        return sendOutcome(reply, 400, "The body's id does not match the URL.");
      const { resources, issues } = prepareGroup(
        [{ resource: { ...body, resourceType: type, id } }],
        defs.isResourceType,
      );
      const resource = resources[0];
      if (!resource || issues.length > 0)
        return sendOutcome(reply, 400, issues[0]?.message ?? 'Invalid resource.');
      const existed = repo.versionIdOf(type, id) !== undefined;
      try {
        const written = await repo.updateResource(resource);
        reply.header('etag', `W/"${written.meta?.versionId ?? ''}"`);
        return sendFhir(reply, existed ? 200 : 201, written);
      } catch (err) {
        return sendError(reply, err);
      }
    },
  );

  /** A resource, or a Bundle whose entries are added (urn:uuid references resolved); unchanged content is left alone. */
  app.post(`${CONTROL_PREFIX}/resources`, async (request, reply) => {
    if (!fromLoopback(request, reply)) return reply;
    const body = request.body;
    if (!isObject(body)) return sendOutcome(reply, 400, 'The body must be a FHIR resource or Bundle.');
    const items: ImportItem[] = [];
    const isBundle = body.resourceType === 'Bundle' && Array.isArray(body.entry);
    if (isBundle) {
      for (const entry of body.entry as unknown[]) {
        const resource = isObject(entry) && isObject(entry.resource) ? entry.resource : undefined;
        const fullUrl = isObject(entry) && typeof entry.fullUrl === 'string' ? entry.fullUrl : undefined;
        items.push({ resource: resource ?? {}, fullUrl: fullUrl?.startsWith('urn:') ? fullUrl : undefined });
      }
    } else {
      items.push({ resource: body });
    }
    const { resources, issues } = prepareGroup(items, defs.isResourceType);
    if (issues.length > 0) {
      const outcome: OperationOutcome = {
        resourceType: 'OperationOutcome',
        issue: issues.map((issue) => ({
          severity: 'error',
          code: 'invalid',
          details: { text: issue.message },
          expression: [isBundle ? `Bundle.entry[${issue.index}].resource` : 'Resource'],
        })),
      };
      return sendFhir(reply, 400, outcome);
    }
    const counts = await storeResources(repo, resources);
    return reply.send({
      ...counts,
      resources: resources.map((r: Resource) => ({
        resourceType: r.resourceType,
        id: r.id,
        versionId: currentVersion(repo, r),
      })),
    });
  });

  app.delete<{ Params: { type: string; id: string } }>(
    `${CONTROL_PREFIX}/resources/:type/:id`,
    async (request, reply) => {
      if (!fromLoopback(request, reply)) return reply;
      const { type, id } = request.params;
      try {
        await repo.deleteResource(type, id);
      } catch (err) {
        return sendError(reply, err);
      }
      return reply.send({ deleted: repo.tombstone(type, id) });
    },
  );
}

function fromLoopback(request: FastifyRequest, reply: FastifyReply): boolean {
  const address = request.socket.remoteAddress ?? '';
  if (address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1') return true;
  sendOutcome(reply, 403, 'Sandbox controls are available from the loopback interface only.');
  return false;
}

function currentVersion(repo: SandboxRepository, resource: Resource): string | undefined {
  return resource.id ? repo.versionIdOf(resource.resourceType, resource.id) : undefined;
}

function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  const outcome = normalizeOperationOutcome(err);
  return sendFhir(reply, getStatus(outcome), outcome);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
