import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { CrmContext } from './context.ts';
import { type SObjectRecord, toSObjectRecord } from './present.ts';

/**
 * Control endpoints for tests and the demo (no session, never faulted, never counted):
 *
 * - `GET /__sandbox/records[?object=NAME][&includeDeleted=true]` → `{records}`
 * - `POST /__sandbox/records` `{records: [{attributes: {type}, …}]}` → 201 `{ids}`: stores records as
 *   given, bypassing uniqueness, required fields and locks (all or nothing)
 * - `DELETE /__sandbox/records[?object=NAME]` → reset
 * - `GET|POST /__sandbox/limits` `{dailyRequestLimit?, used?}` → `{dailyRequestLimit, used}`
 */
const LimitsSchema = z.strictObject({
  dailyRequestLimit: z.number().int().min(0).optional(),
  used: z.number().int().min(0).optional(),
});

const RawRecordsSchema = z.object({
  records: z.array(z.looseObject({ attributes: z.object({ type: z.string().min(1) }).loose() })),
});

export function listRecords(
  ctx: CrmContext,
  object?: string,
  includeDeleted = false,
): SObjectRecord[] | undefined {
  const spec = object === undefined ? undefined : ctx.schema.object(object);
  if (object !== undefined && !spec) return undefined;
  return ctx.records.store.list(spec?.name, { includeDeleted }).flatMap((record) => {
    const recordObject = spec ?? ctx.schema.object(record.object);
    return recordObject ? [toSObjectRecord(recordObject, record)] : [];
  });
}

export function registerControlRoutes(app: FastifyInstance, ctx: CrmContext): void {
  app.get<{ Querystring: { object?: string; includeDeleted?: string } }>(
    '/__sandbox/records',
    async (request, reply) => {
      const records = listRecords(ctx, request.query.object, request.query.includeDeleted === 'true');
      if (!records) return reply.code(404).send({ error: `unknown object ${request.query.object}` });
      return { records };
    },
  );

  app.post('/__sandbox/records', async (request, reply) => {
    const parsed = RawRecordsSchema.safeParse(request.body);
    if (!parsed.success)
      return reply.code(400).send({ error: 'expected {records: [{attributes: {type}, ...}]}' });
    const failures: { index: number; errors: unknown }[] = [];
    const ids: string[] = [];
    try {
      ctx.records.transaction(() => {
        for (const [index, record] of parsed.data.records.entries()) {
          const object = ctx.schema.object(record.attributes.type);
          if (!object) {
            failures.push({
              index,
              errors: [{ errorCode: 'INVALID_TYPE', message: `unknown object ${record.attributes.type}` }],
            });
            continue;
          }
          const result = ctx.records.insertRaw(object, record);
          if ('errors' in result) failures.push({ index, errors: result.errors });
          else ids.push(result.id);
        }
        if (failures.length > 0) throw new Error('rollback');
      });
    } catch (err) {
      if (failures.length === 0) throw err;
      return reply.code(400).send({ error: 'records not stored', failures });
    }
    return reply.code(201).send({ ids });
  });

  app.delete<{ Querystring: { object?: string } }>('/__sandbox/records', async (request, reply) => {
    const object = request.query.object === undefined ? undefined : ctx.schema.object(request.query.object);
    if (request.query.object !== undefined && !object) {
      return reply.code(404).send({ error: `unknown object ${request.query.object}` });
    }
    ctx.records.store.clear(object?.name);
    return { cleared: true };
  });

  const limits = () => {
    const { used, max } = ctx.quota.state();
    return { dailyRequestLimit: max, used };
  };
  app.get('/__sandbox/limits', async () => limits());
  app.post('/__sandbox/limits', async (request, reply) => {
    const parsed = LimitsSchema.safeParse(request.body ?? {});
    if (!parsed.success)
      return reply
        .code(400)
        .send({ error: 'expected {dailyRequestLimit?, used?}', issues: parsed.error.issues });
    const change: { max?: number; used?: number } = {};
    if (parsed.data.dailyRequestLimit !== undefined) change.max = parsed.data.dailyRequestLimit;
    if (parsed.data.used !== undefined) change.used = parsed.data.used;
    ctx.quota.set(change);
    return limits();
  });
}
