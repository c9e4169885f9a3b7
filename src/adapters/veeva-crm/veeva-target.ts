import type { RetryPolicy } from 'cockatiel';
import { SluiceError } from '../../core/errors/index.ts';
import type { TargetWrite } from '../../core/mapping/canonical-to-veeva.ts';
import { asCrmRecordId, type CrmRecordId } from '../../core/model/ids.ts';
import type { DeleteResult, Target, UpsertOptions, WriteResult } from '../../core/ports/target.ts';
import type { DeliveryGate } from '../../delivery/flow-control/gate.ts';
import { HttpStatusError, NetworkError } from '../http/http-error.ts';
import { type JsonResponse, requestJson } from '../http/request.ts';
import type { CrmAuth } from './crm-auth.ts';
import { salesforceInstant } from './veeva-change-source.ts';

export interface VeevaTargetConfig {
  readonly system: string;
  readonly auth: CrmAuth;
  /** Salesforce REST API version, e.g. `v62.0`. */
  readonly apiVersion: string;
  readonly retry: RetryPolicy;
  readonly timeoutMs?: number;
  /**
   * Flow control for this endpoint (rate, burst, adaptive concurrency, breaker, quota pacing, retries
   * honouring Retry-After). When set it replaces `retry` for API calls.
   */
  readonly gate?: DeliveryGate;
  /** The gate's priority class for this target's work (default `backfill`). */
  readonly priority?: string;
}

/** Per-entry error codes that mean "try this entry again later", not "this record is wrong". */
const TRANSIENT_ENTRY_CODES = new Set([
  'REQUEST_LIMIT_EXCEEDED',
  'UNABLE_TO_LOCK_ROW',
  'SERVER_UNAVAILABLE',
  'TOO_MANY_REQUESTS',
]);
/** Per-entry codes for an external id that matched several records. */
const AMBIGUOUS_ENTRY_CODES = new Set(['DUPLICATE_EXTERNAL_ID', 'MULTIPLE_CHOICES']);

/** Salesforce object names and record ids, as they may appear in a query. */
const SOBJECT_NAME = /^[A-Za-z][A-Za-z0-9_]{0,79}$/;
const RECORD_ID = /^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$/;

/** The Salesforce sObject Collections limit. */
export const SOBJECT_COLLECTION_LIMIT = 200;

/**
 * Veeva CRM (Salesforce REST) target: upserts by external id through sObject Collections, up to 200
 * records of one object per request, and reports each record's outcome in order.
 */
export class VeevaTarget implements Target {
  readonly system: string;
  readonly maxBatchSize = SOBJECT_COLLECTION_LIMIT;
  readonly #config: VeevaTargetConfig;

  constructor(config: VeevaTargetConfig) {
    this.#config = config;
    this.system = config.system;
  }

  async upsert(
    object: string,
    externalIdField: string,
    writes: readonly TargetWrite[],
    signal: AbortSignal,
    options: UpsertOptions = {},
  ): Promise<WriteResult[]> {
    if (writes.length === 0) return [];
    if (writes.length > SOBJECT_COLLECTION_LIMIT) {
      throw new SluiceError(
        'INTERNAL',
        `An upsert batch of ${writes.length} exceeds the ${SOBJECT_COLLECTION_LIMIT}-record collection limit.`,
      );
    }
    const path = `/services/data/${this.#config.apiVersion}/composite/sobjects/${encodeURIComponent(object)}/${encodeURIComponent(externalIdField)}`;
    const body = {
      allOrNone: options.allOrNone === true,
      records: writes.map((w) => ({
        attributes: { type: object },
        ...w.fields,
        [externalIdField]: w.externalId,
      })),
    };
    // The envelope travels with the records it seals; a retry re-sends the same batch, same signature.
    const envelope = options.seal ? await options.seal(body.records) : undefined;
    const headers: Record<string, string> = envelope === undefined ? {} : { 'x-sluice-batch': envelope };
    let response: JsonResponse;
    try {
      response = await this.#call(() => this.#send('PATCH', path, body, signal, headers), signal);
    } catch (err) {
      throw translateError(err, `PATCH ${path}`);
    }
    if (!Array.isArray(response.body) || response.body.length !== writes.length) {
      throw new SluiceError(
        'TGT_BAD_RESPONSE',
        `The CRM answered a ${writes.length}-record upsert of ${object} with ${Array.isArray(response.body) ? response.body.length : 'no'} results.`,
      );
    }
    return response.body.map(toWriteResult);
  }

  async delete(ids: readonly CrmRecordId[], signal: AbortSignal): Promise<DeleteResult[]> {
    if (ids.length === 0) return [];
    if (ids.length > SOBJECT_COLLECTION_LIMIT) {
      throw new SluiceError(
        'INTERNAL',
        `A delete of ${ids.length} exceeds the ${SOBJECT_COLLECTION_LIMIT}-record limit.`,
      );
    }
    const path = `/services/data/${this.#config.apiVersion}/composite/sobjects?ids=${ids.map(encodeURIComponent).join(',')}&allOrNone=false`;
    let response: JsonResponse;
    try {
      response = await this.#call(() => this.#send('DELETE', path, undefined, signal), signal);
    } catch (err) {
      throw translateError(err, 'DELETE composite/sobjects');
    }
    if (!Array.isArray(response.body) || response.body.length !== ids.length) {
      throw new SluiceError(
        'TGT_BAD_RESPONSE',
        `The CRM answered a ${ids.length}-record delete with an unexpected body.`,
      );
    }
    return response.body.map(toDeleteResult);
  }

  async inspect(
    object: string,
    ids: readonly CrmRecordId[],
    signal: AbortSignal,
  ): Promise<Map<string, { readonly lastModified: string }>> {
    const live = new Map<string, { readonly lastModified: string }>();
    if (ids.length === 0) return live;
    if (!SOBJECT_NAME.test(object) || ids.some((id) => !RECORD_ID.test(id))) {
      throw new SluiceError('INTERNAL', `Not a Salesforce object name or record id list (${object}).`);
    }
    // Deleted records are not returned by `query` (only by `queryAll`): absent means not live.
    const soql = `SELECT Id, LastModifiedDate FROM ${object} WHERE Id IN (${ids.map((id) => `'${id}'`).join(', ')})`;
    let path: string | undefined =
      `/services/data/${this.#config.apiVersion}/query?q=${encodeURIComponent(soql)}`;
    // Ids come back in 18-character form whatever form was asked: keyed as asked (the first 15 agree).
    const asked = new Map(ids.map((id) => [id.slice(0, 15), id as string]));
    while (path !== undefined) {
      const current: string = path;
      let response: JsonResponse;
      try {
        response = await this.#call(() => this.#send('GET', current, undefined, signal), signal);
      } catch (err) {
        throw translateError(err, `query of ${object}`);
      }
      const body = response.body as { records?: unknown; done?: unknown; nextRecordsUrl?: unknown } | null;
      if (body === null || typeof body !== 'object' || !Array.isArray(body.records)) {
        throw new SluiceError('TGT_BAD_RESPONSE', `The CRM answered a query of ${object} without records.`);
      }
      for (const row of body.records as { Id?: unknown; LastModifiedDate?: unknown }[]) {
        if (typeof row?.Id !== 'string') continue;
        const at =
          typeof row.LastModifiedDate === 'string' ? salesforceInstant(row.LastModifiedDate) : undefined;
        live.set(asked.get(row.Id.slice(0, 15)) ?? row.Id, { lastModified: at ?? '' });
      }
      path = body.done === false && typeof body.nextRecordsUrl === 'string' ? body.nextRecordsUrl : undefined;
    }
    return live;
  }

  /** One API call through the flow-control gate when there is one, else through the retry policy. */
  #call(fn: () => Promise<JsonResponse>, signal: AbortSignal): Promise<JsonResponse> {
    const gate = this.#config.gate;
    if (gate) return gate.run(this.#config.priority ?? 'backfill', () => fn(), signal);
    return this.#config.retry.execute(fn, signal);
  }

  async #send(
    method: 'PATCH' | 'POST' | 'GET' | 'DELETE',
    path: string,
    body: unknown,
    signal: AbortSignal,
    extraHeaders: Readonly<Record<string, string>> = {},
  ): Promise<JsonResponse> {
    const attempt = async (): Promise<JsonResponse> => {
      const session = await this.#config.auth.session(signal);
      return requestJson(
        `${session.instanceUrl}${path}`,
        {
          method,
          body,
          signal,
          headers: { ...extraHeaders, authorization: `Bearer ${session.accessToken}` },
          timeoutMs: this.#config.timeoutMs ?? 120_000,
        },
        'CRM',
      ).catch((err: unknown) => {
        // Salesforce signals its API quota with 403 REQUEST_LIMIT_EXCEEDED, not 429: back off and retry.
        if (
          err instanceof HttpStatusError &&
          err.status === 403 &&
          err.codes.includes('REQUEST_LIMIT_EXCEEDED')
        ) {
          throw new HttpStatusError({
            status: 403,
            transient: true,
            retryAfterMs: err.retryAfterMs,
            codes: err.codes,
            what: 'CRM',
          });
        }
        throw err;
      });
    };
    try {
      return await attempt();
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 401) {
        this.#config.auth.invalidate();
        return attempt();
      }
      throw err;
    }
  }
}

/** Codes that mean the record is already gone: the delete has nothing left to do. */
const GONE_CODES = new Set(['ENTITY_IS_DELETED', 'INVALID_CROSS_REFERENCE_KEY', 'NOT_FOUND']);

function toDeleteResult(entry: unknown): DeleteResult {
  const e = (entry ?? {}) as { success?: unknown; errors?: unknown };
  if (e.success === true) return { status: 'deleted' };
  const errors = Array.isArray(e.errors) ? (e.errors as { statusCode?: unknown; errorCode?: unknown }[]) : [];
  const codes = errors.map((x) => String(x.statusCode ?? x.errorCode ?? 'UNKNOWN'));
  if (codes.length > 0 && codes.every((c) => GONE_CODES.has(c))) return { status: 'missing' };
  if (codes.length > 0 && codes.every((c) => TRANSIENT_ENTRY_CODES.has(c))) return { status: 'retry', codes };
  return { status: 'rejected', codes: codes.length > 0 ? codes : ['UNKNOWN'] };
}

function toWriteResult(entry: unknown): WriteResult {
  const e = (entry ?? {}) as { id?: unknown; success?: unknown; created?: unknown; errors?: unknown };
  if (e.success === true && typeof e.id === 'string') {
    return { status: e.created === true ? 'created' : 'updated', id: asCrmRecordId(e.id) };
  }
  const errors = Array.isArray(e.errors)
    ? (e.errors as { statusCode?: unknown; errorCode?: unknown; message?: unknown; fields?: unknown }[])
    : [];
  const codes = errors.map((x) => String(x.statusCode ?? x.errorCode ?? 'UNKNOWN'));
  const fields = errors.flatMap((x) => (Array.isArray(x.fields) ? x.fields.map(String) : []));
  if (codes.some((c) => AMBIGUOUS_ENTRY_CODES.has(c))) return { status: 'ambiguous' };
  if (codes.length > 0 && codes.every((c) => TRANSIENT_ENTRY_CODES.has(c))) return { status: 'retry', codes };
  const message = errors
    .map((x) => (typeof x.message === 'string' ? x.message : ''))
    .filter(Boolean)
    .join('; ');
  return { status: 'rejected', codes: codes.length > 0 ? codes : ['UNKNOWN'], fields, message };
}

function translateError(err: unknown, what: string): unknown {
  if (err instanceof SluiceError) return err;
  if (err instanceof HttpStatusError) {
    const codes = err.codes.length ? ` (${err.codes.join(', ')})` : '';
    if (err.codes.includes('REQUEST_LIMIT_EXCEEDED')) {
      return new SluiceError('TGT_LIMIT_EXCEEDED', `The CRM's API request quota is exhausted (${what}).`, {
        cause: err,
        details: { status: err.status },
      });
    }
    if (err.status === 401 || err.status === 403) {
      return new SluiceError('TGT_AUTH_FAILED', `The CRM refused ${what}: HTTP ${err.status}${codes}.`, {
        cause: err,
        details: { status: err.status },
      });
    }
    return new SluiceError('TGT_HTTP_ERROR', `The CRM answered ${what} with HTTP ${err.status}${codes}.`, {
      cause: err,
      details: { status: err.status },
    });
  }
  if (err instanceof NetworkError)
    return new SluiceError('TGT_UNREACHABLE', `${err.message} (${what}).`, { cause: err });
  return err;
}
