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
  /** The sandbox's origin (instance URL), known once it listens. */
  origin(): string;
}
