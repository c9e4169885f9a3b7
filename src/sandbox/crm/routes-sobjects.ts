import type { FastifyInstance } from 'fastify';
import type { CrmContext } from './context.ts';
import { describeGlobal, describeObject } from './describe.ts';
import { notFound, SfHttpError, sfError } from './errors.ts';
import { sendOutcome } from './http.ts';
import { normalizeId } from './ids.ts';
import { fieldValue, recordUrl, toSObjectRecord } from './present.ts';
import type { ObjectSpec } from './schema.ts';
import type { StoredRecord } from './store.ts';

/**
 * sObject resources: describe, create, and read/update/delete by Id or by an external id (the upsert
 * route `PATCH /sobjects/{Object}/{ExtIdField}/{value}`).
 */
type Params = { version: string; object: string; id: string; field: string; value: string };
type Query = { fields?: string; updateOnly?: string };

const BASE = '/services/data/:version/sobjects';

export function objectOr404(ctx: CrmContext, name: string): ObjectSpec {
  const object = ctx.schema.object(name);
  if (!object) throw notFound();
  return object;
}

/** A live record of `object` by Id; 404 NOT_FOUND or ENTITY_IS_DELETED otherwise. */
function recordOr404(ctx: CrmContext, object: ObjectSpec, idText: string): StoredRecord {
  const id = normalizeId(idText);
  if (!id) throw notFound(`Provided external ID field does not exist or is not accessible: ${idText}`);
  const record = ctx.records.get(id);
  if (!record || record.object !== object.name) throw notFound();
  if (record.isDeleted) throw new SfHttpError(404, [sfError('ENTITY_IS_DELETED', 'entity is deleted')]);
  return record;
}

/** The record with every field, or only those named by `?fields=a,b`. */
function present(
  ctx: CrmContext,
  object: ObjectSpec,
  record: StoredRecord,
  version: string,
  fields?: string,
): unknown {
  if (!fields) return toSObjectRecord(object, record, version);
  const out: Record<string, unknown> = {
    attributes: { type: object.name, url: recordUrl(version, object.name, record.id) },
  };
  for (const name of fields
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean)) {
    const field = ctx.schema.field(object, name);
    if (!field) {
      throw new SfHttpError(400, [
        sfError('INVALID_FIELD', `No such column '${name}' on entity '${object.name}'`, [name]),
      ]);
    }
    out[field.name] = fieldValue(record, field);
  }
  return out;
}

export function registerSObjectRoutes(api: FastifyInstance, ctx: CrmContext): void {
  const { records } = ctx;

  api.get<{ Params: Params }>(BASE, async (request) => describeGlobal(ctx.schema, request.params.version));

  api.get<{ Params: Params }>(`${BASE}/:object`, async (request) => {
    const object = objectOr404(ctx, request.params.object);
    const d = describeObject(object, request.params.version) as Record<string, unknown>;
    const { fields: _fields, recordTypeInfos: _types, ...objectDescribe } = d;
    return { objectDescribe, recentItems: [] };
  });

  api.get<{ Params: Params }>(`${BASE}/:object/describe`, async (request) =>
    describeObject(objectOr404(ctx, request.params.object), request.params.version),
  );

  api.post<{ Params: Params }>(`${BASE}/:object`, async (request, reply) => {
    const object = objectOr404(ctx, request.params.object);
    const parsed = records.parse(object, request.body ?? {});
    if (!parsed.ok) throw new SfHttpError(400, parsed.errors);
    const outcome = records.insert(parsed.record);
    if (outcome.kind === 'created')
      return reply.code(201).send({ id: outcome.id, success: true, errors: [] });
    return sendOutcome(reply, outcome, request.params.version, object.name);
  });

  api.get<{ Params: Params; Querystring: Query }>(`${BASE}/:object/:id`, async (request) => {
    const object = objectOr404(ctx, request.params.object);
    const record = recordOr404(ctx, object, request.params.id);
    return present(ctx, object, record, request.params.version, request.query.fields);
  });

  api.patch<{ Params: Params }>(`${BASE}/:object/:id`, async (request, reply) => {
    const object = objectOr404(ctx, request.params.object);
    const record = recordOr404(ctx, object, request.params.id);
    const parsed = records.parse(object, request.body ?? {});
    if (!parsed.ok) throw new SfHttpError(400, parsed.errors);
    return sendOutcome(reply, records.update(parsed.record, record), request.params.version, object.name);
  });

  api.delete<{ Params: Params }>(`${BASE}/:object/:id`, async (request, reply) => {
    const object = objectOr404(ctx, request.params.object);
    const record = recordOr404(ctx, object, request.params.id);
    return sendOutcome(reply, records.delete(record), request.params.version, object.name);
  });

  /** The records an external id value matches, or the error for a bad field or value. */
  const byExternalId = (params: Params): { object: ObjectSpec; ids: readonly string[] } => {
    const object = objectOr404(ctx, params.object);
    const ext = records.externalIdField(object, params.field);
    if ('error' in ext) throw new SfHttpError(ext.status, [ext.error]);
    const key = records.upsertKey(ext.field, params.value);
    if ('error' in key) throw new SfHttpError(400, [key.error]);
    return { object, ids: records.matches(object, ext.field, key.value) };
  };

  api.get<{ Params: Params; Querystring: Query }>(`${BASE}/:object/:field/:value`, async (request, reply) => {
    const { version } = request.params;
    const { object, ids } = byExternalId(request.params);
    if (ids.length > 1) return reply.code(300).send(ids.map((id) => recordUrl(version, object.name, id)));
    const record = ids[0] === undefined ? undefined : records.get(ids[0]);
    if (!record) throw notFound();
    return present(ctx, object, record, version, request.query.fields);
  });

  api.delete<{ Params: Params }>(`${BASE}/:object/:field/:value`, async (request, reply) => {
    const { version } = request.params;
    const { object, ids } = byExternalId(request.params);
    if (ids.length > 1) return reply.code(300).send(ids.map((id) => recordUrl(version, object.name, id)));
    const record = ids[0] === undefined ? undefined : records.get(ids[0]);
    if (!record) throw notFound();
    return sendOutcome(reply, records.delete(record), version, object.name);
  });

  api.patch<{ Params: Params; Querystring: Query }>(
    `${BASE}/:object/:field/:value`,
    async (request, reply) => {
      const { version } = request.params;
      const object = objectOr404(ctx, request.params.object);
      const ext = records.externalIdField(object, request.params.field);
      if ('error' in ext) throw new SfHttpError(ext.status, [ext.error]);
      const parsed = records.parse(object, request.body ?? {});
      if (!parsed.ok) throw new SfHttpError(400, parsed.errors);
      const key = records.upsertKey(ext.field, request.params.value);
      if ('error' in key) throw new SfHttpError(400, [key.error]);
      const updateOnly = request.query.updateOnly?.toLowerCase() === 'true';
      const outcome = records.transaction(() =>
        records.upsert(parsed.record, ext.field, key.value, { updateOnly }),
      );
      return sendOutcome(reply, outcome, version, object.name);
    },
  );
}
