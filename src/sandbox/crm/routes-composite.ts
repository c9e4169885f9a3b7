import type { FastifyInstance } from 'fastify';
import { verifyEnvelope } from '../../core/batch/envelope.ts';
import type { CrmContext } from './context.ts';
import {
  type CollectionError,
  notFound,
  type SfError,
  SfHttpError,
  sfError,
  toCollectionError,
} from './errors.ts';
import { normalizeId } from './ids.ts';
import type { WriteOutcome } from './records.ts';
import { objectOr404 } from './routes-sobjects.ts';
import type { ObjectSpec } from './schema.ts';
import type { ParsedRecord } from './validate-record.ts';
import { keyValue, type StoredValue } from './values.ts';

/**
 * sObject Collections: upsert by external id (one object type, ≤ 200 records, results in request
 * order), create and update (mixed types) and delete. Deserialisation problems fail the whole request
 * with 400; record problems are reported per record. With `allOrNone` the whole request runs in one
 * transaction that is rolled back when any record fails.
 */
export const COLLECTION_LIMIT = 200;
/** sObject Collections upsert exists from API version 46.0. */
const MIN_UPSERT_VERSION = 46;

interface ItemResult {
  readonly id?: string;
  readonly success: boolean;
  readonly errors: readonly CollectionError[];
  readonly created?: boolean;
}

interface CollectionBody {
  readonly allOrNone: boolean;
  readonly records: readonly Record<string, unknown>[];
}

const ROLLED_BACK: CollectionError = {
  statusCode: 'ALL_OR_NONE_OPERATION_ROLLED_BACK',
  message: 'Record rolled back because not all records were valid and the request was using AllOrNone header',
  fields: [],
};

const failure = (errors: readonly SfError[], upsert: boolean): ItemResult => ({
  success: false,
  errors: errors.map(toCollectionError),
  ...(upsert ? { created: false } : {}),
});

function readBody(body: unknown): CollectionBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new SfHttpError(400, [
      sfError('JSON_PARSER_ERROR', 'The request body must be a JSON object with a records array'),
    ]);
  }
  const { allOrNone = false, records } = body as { allOrNone?: unknown; records?: unknown };
  if (typeof allOrNone !== 'boolean') {
    throw new SfHttpError(400, [sfError('JSON_PARSER_ERROR', 'allOrNone must be a boolean')]);
  }
  if (!Array.isArray(records)) {
    throw new SfHttpError(400, [sfError('JSON_PARSER_ERROR', 'The request body has no records array')]);
  }
  if (records.length > COLLECTION_LIMIT) {
    throw new SfHttpError(400, [
      sfError(
        'EXCEEDED_ID_LIMIT',
        `record limit reached. cannot submit more than ${COLLECTION_LIMIT} records into this call`,
      ),
    ]);
  }
  for (const record of records) {
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      throw new SfHttpError(400, [sfError('JSON_PARSER_ERROR', 'Each record must be a JSON object')]);
    }
  }
  return { allOrNone, records: records as Record<string, unknown>[] };
}

/** The object a record's `attributes.type` names; a missing or unknown type fails the request. */
function typeOf(ctx: CrmContext, record: Record<string, unknown>): ObjectSpec {
  const attributes = record.attributes as { type?: unknown } | undefined;
  const type = typeof attributes === 'object' && attributes !== null ? attributes.type : undefined;
  if (typeof type !== 'string' || type === '') {
    throw new SfHttpError(400, [sfError('INVALID_TYPE', 'Must send a concrete entity type.')]);
  }
  const object = ctx.schema.object(type);
  if (!object)
    throw new SfHttpError(400, [sfError('INVALID_TYPE', `sObject type '${type}' is not supported.`)]);
  return object;
}

/** Parses every record first: one deserialisation error fails the request, as in Salesforce. */
function parseAll(
  ctx: CrmContext,
  records: readonly Record<string, unknown>[],
  objects: readonly ObjectSpec[],
): ParsedRecord[] {
  return records.map((record, i) => {
    const parsed = ctx.records.parse(objects[i]!, record);
    if (!parsed.ok) throw new SfHttpError(400, parsed.errors);
    return parsed.record;
  });
}

/**
 * Runs one step per record, in order, each in its own savepoint. With `allOrNone`, any failure rolls
 * everything back and the records that had succeeded report ALL_OR_NONE_OPERATION_ROLLED_BACK.
 */
function runCollection(
  ctx: CrmContext,
  allOrNone: boolean,
  steps: readonly (() => ItemResult)[],
  upsert: boolean,
): ItemResult[] {
  let results: ItemResult[] = [];
  const rollback = new Error('all-or-none rollback');
  try {
    // One transaction for the batch, a savepoint per record.
    ctx.records.transaction(() => {
      results = steps.map((step) => ctx.records.transaction(step));
      if (allOrNone && results.some((r) => !r.success)) throw rollback;
    });
  } catch (err) {
    if (err !== rollback) throw err;
    return results.map((r) =>
      r.success ? { success: false, errors: [ROLLED_BACK], ...(upsert ? { created: false } : {}) } : r,
    );
  }
  return results;
}

function toItem(outcome: WriteOutcome, upsert: boolean): ItemResult {
  switch (outcome.kind) {
    case 'created':
      return { id: outcome.id, success: true, errors: [], ...(upsert ? { created: true } : {}) };
    case 'updated':
    case 'deleted':
      return { id: outcome.id, success: true, errors: [], ...(upsert ? { created: false } : {}) };
    case 'ambiguous':
      return failure(
        [
          sfError(
            'DUPLICATE_EXTERNAL_ID',
            `more than one record found for external id field: [${outcome.ids.join(', ')}]`,
          ),
        ],
        upsert,
      );
    case 'rejected':
      return failure(outcome.errors, upsert);
  }
}

function versionNumber(version: string): number {
  return Number(version.replace(/^v/, ''));
}

/**
 * A receiver's check of a signed batch envelope: signature by a trusted key, and a payload hash that
 * matches the records of this very request. Anything else is refused as a whole (400), nothing written.
 */
async function checkBatchEnvelope(
  ctx: CrmContext,
  header: unknown,
  records: readonly unknown[],
): Promise<void> {
  if (!ctx.batchJwks) return;
  if (typeof header !== 'string' || header === '') {
    if (!ctx.requireSignedBatches) return;
    throw new SfHttpError(400, [sfError('BATCH_ENVELOPE_MISSING', 'This org accepts signed batches only')]);
  }
  const verified = await verifyEnvelope(header, ctx.batchJwks, records);
  if (!verified.ok) {
    throw new SfHttpError(400, [sfError(verified.code, verified.issues[0]?.message ?? 'envelope refused')]);
  }
  ctx.verifiedBatches.push({
    batchId: verified.value.envelope.batchId,
    kid: verified.value.kid,
    recordCount: verified.value.envelope.recordCount,
    purpose: verified.value.envelope.purpose,
  });
}

export function registerCompositeRoutes(api: FastifyInstance, ctx: CrmContext): void {
  const { records } = ctx;
  const BASE = '/services/data/:version/composite/sobjects';

  api.patch<{ Params: { version: string; object: string; field: string } }>(
    `${BASE}/:object/:field`,
    async (request) => {
      if (versionNumber(request.params.version) < MIN_UPSERT_VERSION) throw notFound();
      const object = objectOr404(ctx, request.params.object);
      const ext = records.externalIdField(object, request.params.field);
      if ('error' in ext) throw new SfHttpError(ext.status, [ext.error]);
      const body = readBody(request.body);
      await checkBatchEnvelope(ctx, request.headers['x-sluice-batch'], body.records);
      for (const record of body.records) {
        if (typeOf(ctx, record) !== object) {
          throw new SfHttpError(400, [
            sfError('INVALID_TYPE', `Every record of this request must be of type ${object.name}`),
          ]);
        }
      }
      const parsed = parseAll(
        ctx,
        body.records,
        body.records.map(() => object),
      );
      const keys = body.records.map((record) =>
        records.upsertKey(ext.field, findCaseInsensitive(record, ext.field.name)),
      );
      const seen = new Map<string, number>();
      for (const key of keys) {
        if ('value' in key) {
          const folded = keyValue(ext.field, key.value) ?? '';
          seen.set(folded, (seen.get(folded) ?? 0) + 1);
        }
      }
      const steps = parsed.map((p, i) => (): ItemResult => {
        const key = keys[i]!;
        if ('error' in key) return failure([key.error], true);
        if ((seen.get(keyValue(ext.field, key.value) ?? '') ?? 0) > 1) {
          return failure(
            [
              sfError('DUPLICATE_VALUE', `Duplicate external id specified for ${ext.field.name}`, [
                ext.field.name,
              ]),
            ],
            true,
          );
        }
        return toItem(records.upsert(p, ext.field, key.value as StoredValue), true);
      });
      return runCollection(ctx, body.allOrNone, steps, true);
    },
  );

  api.post<{ Params: { version: string } }>(BASE, async (request) => {
    const body = readBody(request.body);
    const objects = body.records.map((r) => typeOf(ctx, r));
    const parsed = parseAll(ctx, body.records, objects);
    const steps = parsed.map((p, i) => (): ItemResult => {
      if (body.records[i]?.Id !== undefined) {
        return failure(
          [sfError('INVALID_FIELD', 'Records in a create request can not have an Id', ['Id'])],
          false,
        );
      }
      return toItem(records.insert(p), false);
    });
    return runCollection(ctx, body.allOrNone, steps, false);
  });

  api.patch<{ Params: { version: string } }>(BASE, async (request) => {
    const body = readBody(request.body);
    const objects = body.records.map((r) => typeOf(ctx, r));
    const withoutIds = body.records.map(({ Id: _id, ...rest }) => rest);
    const parsed = parseAll(ctx, withoutIds, objects);
    const steps = parsed.map((p, i) => (): ItemResult => {
      const rawId = body.records[i]?.Id;
      const id = typeof rawId === 'string' ? normalizeId(rawId) : undefined;
      if (!id)
        return failure(
          [sfError('MALFORMED_ID', 'Id in an update request is missing or malformed', ['Id'])],
          false,
        );
      const existing = records.get(id);
      if (!existing || existing.object !== p.object.name || existing.isDeleted) {
        return failure([sfError('INVALID_CROSS_REFERENCE_KEY', 'invalid cross reference id', ['Id'])], false);
      }
      return toItem(records.update(p, existing), false);
    });
    return runCollection(ctx, body.allOrNone, steps, false);
  });

  api.delete<{ Params: { version: string }; Querystring: { ids?: string; allOrNone?: string } }>(
    BASE,
    async (request) => {
      const ids = (request.query.ids ?? '').split(',').filter(Boolean);
      if (ids.length === 0) throw new SfHttpError(400, [sfError('MISSING_ARGUMENT', 'ids not specified')]);
      if (ids.length > COLLECTION_LIMIT) {
        throw new SfHttpError(400, [
          sfError(
            'EXCEEDED_ID_LIMIT',
            `record limit reached. cannot submit more than ${COLLECTION_LIMIT} records into this call`,
          ),
        ]);
      }
      const steps = ids.map((text) => (): ItemResult => {
        const id = normalizeId(text);
        const existing = id ? records.get(id) : undefined;
        if (!id) return failure([sfError('MALFORMED_ID', 'malformed id')], false);
        if (!existing)
          return failure([sfError('INVALID_CROSS_REFERENCE_KEY', 'invalid cross reference id')], false);
        const outcome = records.delete(existing);
        return outcome.kind === 'deleted'
          ? { id, success: true, errors: [] }
          : { ...toItem(outcome, false), id };
      });
      return runCollection(ctx, request.query.allOrNone?.toLowerCase() === 'true', steps, false);
    },
  );
}

/** A record's value for a field, its name matched case-insensitively as Salesforce does. */
function findCaseInsensitive(record: Record<string, unknown>, name: string): unknown {
  if (name in record) return record[name];
  const key = Object.keys(record).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : record[key];
}
