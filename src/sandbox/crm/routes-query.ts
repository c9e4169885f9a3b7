import type { FastifyInstance } from 'fastify';
import type { CrmContext } from './context.ts';
import { SfHttpError, sfError } from './errors.ts';
import { executeQuery, planQuery, projectRecord, QueryReader } from './query.ts';
import { batchSizeFrom, type QueryCursor } from './query-cursors.ts';

/**
 * `GET /query?q=SOQL` and `GET /queryAll?q=SOQL` (deleted records included), paged by
 * `Sforce-Query-Options: batchSize=N`; `GET /query/{locator}` (or `/queryAll/{locator}`) continues.
 */
export function registerQueryRoutes(api: FastifyInstance, ctx: CrmContext): void {
  const page = (cursor: QueryCursor, position: number, version: string): unknown => {
    const reader = new QueryReader(ctx.schema, ctx.records.store);
    const end = Math.min(cursor.ids.length, position + cursor.batchSize);
    const rows: unknown[] = [];
    for (const id of cursor.ids.slice(position, end)) {
      const record = ctx.records.get(id);
      if (record) rows.push(projectRecord(cursor.plan, record, reader, version));
    }
    const done = end >= cursor.ids.length;
    const kind = cursor.all ? 'queryAll' : 'query';
    return {
      totalSize: cursor.ids.length,
      done,
      ...(done ? {} : { nextRecordsUrl: `/services/data/${version}/${kind}/${cursor.id}-${end}` }),
      records: rows,
    };
  };

  for (const all of [false, true]) {
    const kind = all ? 'queryAll' : 'query';

    api.get<{ Params: { version: string }; Querystring: { q?: string } }>(
      `/services/data/:version/${kind}`,
      async (request) => {
        const plan = planQuery(ctx.schema, request.query.q ?? '');
        const reader = new QueryReader(ctx.schema, ctx.records.store);
        const ids = executeQuery(plan, ctx.records.store, reader, all);
        const batchSize = batchSizeFrom(request.headers['sforce-query-options']);
        const cursor = ctx.cursors.open(plan, ids, batchSize, all);
        return page(cursor, 0, request.params.version);
      },
    );

    api.get<{ Params: { version: string; locator: string } }>(
      `/services/data/:version/${kind}/:locator`,
      async (request) => {
        const found = ctx.cursors.resolve(request.params.locator);
        if (!found) throw new SfHttpError(400, [sfError('INVALID_QUERY_LOCATOR', 'invalid query locator')]);
        return page(found.cursor, found.position, request.params.version);
      },
    );
  }
}
