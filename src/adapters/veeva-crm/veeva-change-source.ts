import type { RetryPolicy } from 'cockatiel';
import { SluiceError } from '../../core/errors/index.ts';
import { isJsonObject } from '../../core/fhir/resource.ts';
import type { SystemName } from '../../core/model/ids.ts';
import type { Source, SourceDeletion, SourcePage, SourceRecord } from '../../core/ports/source.ts';
import { HttpStatusError } from '../http/http-error.ts';
import { requestJson } from '../http/request.ts';
import type { CrmAuth } from './crm-auth.ts';

export interface VeevaChangeObject {
  /** The sObject, e.g. `Account`, `Multichannel_Consent_vod__c`, `Child_Account_vod__c`. */
  readonly name: string;
  /** Fields to read besides Id, SystemModstamp and IsDeleted (what the mapping needs, nothing more). */
  readonly fields: readonly string[];
}

export interface VeevaChangeSourceConfig {
  readonly system: SystemName;
  readonly auth: CrmAuth;
  readonly apiVersion: string;
  readonly retry: RetryPolicy;
  readonly objects: readonly VeevaChangeObject[];
  /** Records per API page (`Sforce-Query-Options: batchSize`), 200–2000; default 500. */
  readonly pageSize?: number;
  readonly timeoutMs?: number;
}

const FIELD = /^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$/;

/**
 * Change capture from Veeva CRM (Salesforce REST): `queryAll` of each object ordered by
 * `SystemModstamp` from the checkpoint, so edits and deletions both come through. Each page carries
 * its own checkpoint — the newest `SystemModstamp` on it — since pages are in change order; the
 * boundary instant is read again on the next run (the ledger and version keys make that harmless).
 * Deleted records become deletions, never records.
 */
export class VeevaChangeSource implements Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  readonly explicitCheckpoints = true;
  readonly #config: VeevaChangeSourceConfig;

  constructor(config: VeevaChangeSourceConfig) {
    for (const o of config.objects) {
      for (const f of [o.name, ...o.fields]) {
        if (!FIELD.test(f))
          throw new SluiceError('CFG_FLOW_INVALID', `Not a Salesforce field or object name: ${f}.`);
      }
    }
    this.#config = config;
    this.system = config.system;
    this.streams = config.objects.map((o) => o.name);
  }

  async *read(stream: string, since: string | undefined, signal: AbortSignal): AsyncGenerator<SourcePage> {
    const object = this.#config.objects.find((o) => o.name === stream);
    if (!object) throw new SluiceError('INTERNAL', `No change stream named ${stream}.`);
    const fields = [...new Set(['Id', 'SystemModstamp', 'IsDeleted', ...object.fields])];
    // SOQL date-times are compared to the second: start at the checkpoint's second (inclusive).
    const from = since === undefined ? undefined : `${new Date(since).toISOString().slice(0, 19)}Z`;
    const soql = `SELECT ${fields.join(', ')} FROM ${object.name}${from ? ` WHERE SystemModstamp >= ${from}` : ''} ORDER BY SystemModstamp ASC, Id ASC`;
    let path: string | undefined =
      `/services/data/${this.#config.apiVersion}/queryAll?q=${encodeURIComponent(soql)}`;
    let pageNumber = 0;
    while (path !== undefined) {
      signal.throwIfAborted();
      const body = await this.#get(path, signal);
      pageNumber++;
      const rows = Array.isArray(body.records) ? body.records : [];
      const records: SourceRecord[] = [];
      const deletions: SourceDeletion[] = [];
      let newest: string | undefined;
      rows.forEach((row, index) => {
        const origin = `${stream} query page ${pageNumber} row ${index}`;
        if (!isJsonObject(row) || typeof row.Id !== 'string') {
          records.push({ stream, resource: row, origin });
          return;
        }
        const stamp =
          typeof row.SystemModstamp === 'string' ? salesforceInstant(row.SystemModstamp) : undefined;
        if (stamp !== undefined && (newest === undefined || stamp > newest)) newest = stamp;
        if (row.IsDeleted === true) {
          deletions.push({ resourceType: stream, id: row.Id, ...(stamp ? { at: stamp } : {}), origin });
        } else records.push({ stream, resource: row, origin });
      });
      const page: { -readonly [K in keyof SourcePage]: SourcePage[K] } = { records };
      if (deletions.length > 0) page.deletions = deletions;
      if (newest !== undefined) page.checkpoint = newest;
      if (typeof body.totalSize === 'number') page.total = body.totalSize;
      yield page;
      path = body.done === false && typeof body.nextRecordsUrl === 'string' ? body.nextRecordsUrl : undefined;
    }
  }

  async #get(path: string, signal: AbortSignal): Promise<{ [key: string]: unknown }> {
    const attempt = async () => {
      const session = await this.#config.auth.session(signal);
      return requestJson(
        `${session.instanceUrl}${path}`,
        {
          signal,
          headers: {
            authorization: `Bearer ${session.accessToken}`,
            'sforce-query-options': `batchSize=${this.#config.pageSize ?? 500}`,
          },
          timeoutMs: this.#config.timeoutMs ?? 120_000,
        },
        'CRM',
      );
    };
    try {
      const response = await this.#config.retry.execute(async () => {
        try {
          return await attempt();
        } catch (err) {
          if (err instanceof HttpStatusError && err.status === 401) {
            this.#config.auth.invalidate();
            return attempt();
          }
          throw err;
        }
      }, signal);
      if (!isJsonObject(response.body)) {
        throw new SluiceError(
          'SRC_BAD_RESPONSE',
          'The CRM answered a change query with something that is not a query result.',
        );
      }
      return response.body;
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      if (err instanceof HttpStatusError) {
        throw new SluiceError(
          err.status === 401 || err.status === 403 ? 'SRC_FORBIDDEN' : 'SRC_HTTP_ERROR',
          `The CRM answered a change query with HTTP ${err.status}${err.codes.length ? ` (${err.codes.join(', ')})` : ''}.`,
          { cause: err, details: { status: err.status } },
        );
      }
      throw new SluiceError('SRC_UNREACHABLE', 'The CRM could not be reached for a change query.', {
        cause: err,
      });
    }
  }
}

/** `2026-11-23T12:00:00.000+0000` → `2026-11-23T12:00:00.000Z`. */
export function salesforceInstant(value: string): string | undefined {
  const ms = Date.parse(value.replace(/([+-]\d{2})(\d{2})$/, '$1:$2'));
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}
