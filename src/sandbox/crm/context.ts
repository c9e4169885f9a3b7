import type { JWK } from 'jose';
import type { OAuthServer } from './oauth.ts';
import type { QueryCursors } from './query-cursors.ts';
import type { RollingQuota } from './quota.ts';
import type { CrmRecords } from './records.ts';
import type { Schema } from './schema.ts';

/** What the CRM sandbox's route modules share; built once by `startCrmSandbox`. */
export interface CrmContext {
  readonly schema: Schema;
  readonly records: CrmRecords;
  readonly oauth: OAuthServer;
  readonly quota: RollingQuota;
  readonly cursors: QueryCursors;
  readonly now: () => Date;
  /** Trusted batch signing keys: when set, an upsert carrying `X-Sluice-Batch` must verify against them. */
  readonly batchJwks?: { readonly keys: readonly JWK[] };
  /** Refuse upserts that carry no signed batch envelope. */
  readonly requireSignedBatches?: boolean;
  /** Envelopes verified so far (batch id, kid, record count), for tests and the dashboard. */
  readonly verifiedBatches: { batchId: string; kid: string; recordCount: number; purpose: string }[];
  /** The sandbox's origin (instance URL), known once it listens. */
  origin(): string;
}
