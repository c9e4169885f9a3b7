import type { JWK } from 'jose';
import { SluiceError } from '../../core/errors/index.ts';
import type { FaultInjector } from '../shared/faults.ts';
import type { RequestLog } from '../shared/request-log.ts';
import { createSandboxServer } from '../shared/server.ts';
import { installApiGuard } from './api-guard.ts';
import type { CrmContext } from './context.ts';
import { listRecords, registerControlRoutes } from './control.ts';
import { installHttp } from './http.ts';
import { type CrmClient, DEMO_CRM_CLIENT, OAuthServer } from './oauth.ts';
import type { SObjectRecord } from './present.ts';
import { QueryCursors } from './query-cursors.ts';
import { RollingQuota } from './quota.ts';
import { CrmRecords } from './records.ts';
import { registerCompositeRoutes } from './routes-composite.ts';
import { registerMetaRoutes, registerVersionsRoute } from './routes-meta.ts';
import { registerOAuthRoutes } from './routes-oauth.ts';
import { registerQueryRoutes } from './routes-query.ts';
import { registerSObjectRoutes } from './routes-sobjects.ts';
import { createSchema } from './schema.ts';
import { RecordStore } from './store.ts';

/**
 * The CRM sandbox: a Veeva CRM org as reached through the Salesforce REST API (OAuth client
 * credentials, sObject rows and upsert by external id, sObject Collections, SOQL change queries, the
 * daily API allocation), its records in SQLite, plus the shared fault injection and request log.
 */
export type { CrmClient } from './oauth.ts';
export { DEMO_CRM_CLIENT } from './oauth.ts';
export type { SObjectRecord } from './present.ts';
export { RECORD_TYPES } from './schema.ts';

export interface CrmSandboxOptions {
  readonly port?: number;
  /** SQLite file; default ':memory:'. */
  readonly dbPath?: string;
  /** API requests allowed per rolling 24 hours; default 100 000. */
  readonly dailyRequestLimit?: number;
  readonly clients?: readonly CrmClient[];
  /** Access token lifetime; default 7200 s. */
  readonly sessionSeconds?: number;
  /** Clock for the quota window, token expiry and record timestamps. */
  readonly now?: () => Date;
  /** Trusted batch signing keys (JWKS): signed batch envelopes (`X-Sluice-Batch`) are verified. */
  readonly batchJwks?: { readonly keys: readonly JWK[] };
  /** With `batchJwks`: refuse upserts without an envelope (400 BATCH_ENVELOPE_MISSING). */
  readonly requireSignedBatches?: boolean;
}

export interface CrmSandbox {
  /** Instance URL, e.g. http://127.0.0.1:41235 (no trailing slash). */
  readonly url: string;
  readonly faults: FaultInjector;
  readonly requests: RequestLog;
  /** Batch envelopes it verified (batch id, key id, record count, purpose). */
  readonly verifiedBatches: readonly { batchId: string; kid: string; recordCount: number; purpose: string }[];
  /** The records it holds (deleted ones excluded), of one object or of all. */
  records(object?: string): SObjectRecord[];
  close(): Promise<void>;
}

export async function startCrmSandbox(options: CrmSandboxOptions = {}): Promise<CrmSandbox> {
  const now = options.now ?? (() => new Date());
  const schema = createSchema();
  const store = RecordStore.open(options.dbPath ?? ':memory:');
  let origin = '';
  const ctx: CrmContext = {
    schema,
    records: new CrmRecords(schema, store, now),
    oauth: new OAuthServer(options.clients ?? [DEMO_CRM_CLIENT], options.sessionSeconds ?? 7200, now),
    quota: new RollingQuota(options.dailyRequestLimit ?? 100_000, now),
    cursors: new QueryCursors(now),
    now,
    ...(options.batchJwks ? { batchJwks: options.batchJwks } : {}),
    ...(options.requireSignedBatches ? { requireSignedBatches: true } : {}),
    verifiedBatches: [],
    origin: () => origin,
  };

  const server = createSandboxServer({
    errorBody: (_status, message, code) => [{ message, errorCode: code, fields: [] }],
  });
  const { app } = server;
  installHttp(app);
  registerOAuthRoutes(app, ctx);
  registerVersionsRoute(app);
  registerControlRoutes(app, ctx);
  // The REST API routes live in their own encapsulated instance so the session/quota gate covers only them.
  await app.register((api, _options, done) => {
    installApiGuard(api, ctx);
    registerMetaRoutes(api, ctx);
    registerSObjectRoutes(api, ctx);
    registerCompositeRoutes(api, ctx);
    registerQueryRoutes(api, ctx);
    done();
  });

  try {
    origin = await server.listen(options.port ?? 0);
  } catch (err) {
    store.close();
    throw err;
  }

  let closed = false;
  return {
    url: origin,
    faults: server.faults,
    requests: server.requests,
    verifiedBatches: ctx.verifiedBatches,
    records(object?: string): SObjectRecord[] {
      const records = listRecords(ctx, object);
      if (!records) throw new SluiceError('INTERNAL', `The CRM sandbox has no object named ${object}.`);
      return records;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await server.close();
      store.close();
    },
  };
}
