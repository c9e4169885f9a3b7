import type { FastifyInstance } from 'fastify';
import type { CrmContext } from './context.ts';
import { notFound } from './errors.ts';

/** Versions supported (the list `GET /services/data` returns); any well-formed `vNN.N` is served. */
const VERSIONS = Array.from({ length: 62 - 31 + 1 }, (_, i) => `${31 + i}.0`);

/** `GET /services/data` (no session needed, not counted, as in Salesforce). */
export function registerVersionsRoute(app: FastifyInstance): void {
  app.get('/services/data', async () =>
    VERSIONS.map((version) => ({ label: `API ${version}`, url: `/services/data/v${version}`, version })),
  );
}

/** Routes inside the API gate: the resource list and `limits`. */
export function registerMetaRoutes(api: FastifyInstance, ctx: CrmContext): void {
  api.get<{ Params: { version: string } }>('/services/data/:version', async (request) => {
    const base = `/services/data/${request.params.version}`;
    return {
      sobjects: `${base}/sobjects`,
      query: `${base}/query`,
      queryAll: `${base}/queryAll`,
      composite: `${base}/composite`,
      limits: `${base}/limits`,
    };
  });

  // Unknown API paths answer NOT_FOUND behind the gate, so they need a session and count, as in Salesforce.
  api.all('/services/data/:version/*', async () => {
    throw notFound();
  });

  api.get('/services/data/:version/limits', async () => {
    const { used, max } = ctx.quota.state();
    return { DailyApiRequests: { Max: max, Remaining: Math.max(0, max - used) } };
  });
}
