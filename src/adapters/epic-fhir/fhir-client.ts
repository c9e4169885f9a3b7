import type { RetryPolicy } from 'cockatiel';
import { SluiceError } from '../../core/errors/index.ts';
import { isJsonObject } from '../../core/fhir/resource.ts';
import { isFhirInstant } from '../../core/validate/compiled/primitives.ts';
import { HttpStatusError, NetworkError } from '../http/http-error.ts';
import { type JsonResponse, requestJson } from '../http/request.ts';
import type { BackendServicesAuth } from './smart-auth.ts';

export interface FhirClientConfig {
  readonly baseUrl: string;
  readonly auth?: BackendServicesAuth;
  readonly retry: RetryPolicy;
  readonly timeoutMs?: number;
}

export interface SearchPage {
  readonly resources: unknown[];
  readonly total?: number;
  /** Issue codes of OperationOutcome entries the server put in the searchset. */
  readonly outcomes: string[];
  readonly url: string;
  /** True when the server gave no `next` link: the search is complete. */
  readonly last: boolean;
  /**
   * When the server answered, by its own clock (ISO): the earlier of the searchset's `meta.lastUpdated`
   * and the HTTP `Date` header, where given and valid. Absent when neither is.
   */
  readonly answeredAt?: string;
}

/**
 * A thin FHIR R4 REST client: authenticated GETs with retries, searchset paging by `next` links, and
 * errors translated to catalog codes. It never follows a link to another origin (the token would leak).
 */
export class FhirClient {
  readonly #config: FhirClientConfig;
  readonly #base: URL;

  constructor(config: FhirClientConfig) {
    this.#config = config;
    this.#base = new URL(`${config.baseUrl.replace(/\/$/, '')}/`);
  }

  /** Runs a search and yields each page until the server stops giving a `next` link. */
  async *search(
    resourceType: string,
    params: Record<string, string>,
    signal: AbortSignal,
  ): AsyncGenerator<SearchPage> {
    let url: string | undefined = new URL(
      `${resourceType}?${new URLSearchParams(params)}`,
      this.#base,
    ).toString();
    while (url !== undefined) {
      const response = await this.#getResponse(url, signal);
      const bundle = response.body;
      if (!isJsonObject(bundle) || bundle.resourceType !== 'Bundle') {
        throw new SluiceError(
          'SRC_BAD_RESPONSE',
          `The EHR answered a ${resourceType} search with something that is not a Bundle.`,
        );
      }
      const resources: unknown[] = [];
      const outcomes: string[] = [];
      for (const entry of Array.isArray(bundle.entry) ? bundle.entry : []) {
        if (!isJsonObject(entry)) continue;
        const resource = entry.resource;
        const mode = isJsonObject(entry.search) ? entry.search.mode : undefined;
        if (mode === 'outcome' || (isJsonObject(resource) && resource.resourceType === 'OperationOutcome')) {
          if (isJsonObject(resource) && Array.isArray(resource.issue)) {
            for (const i of resource.issue)
              if (isJsonObject(i) && typeof i.code === 'string') outcomes.push(i.code);
          }
          continue;
        }
        if (mode === 'include') continue;
        resources.push(resource);
      }
      const next = this.#nextLink(bundle.link);
      const page: { -readonly [K in keyof SearchPage]: SearchPage[K] } = {
        resources,
        outcomes,
        url,
        last: next === undefined,
      };
      if (typeof bundle.total === 'number') page.total = bundle.total;
      const answeredAt = serverTimeOf(bundle.meta, response.headers.get('date'));
      if (answeredAt !== undefined) page.answeredAt = answeredAt;
      yield page;
      url = next;
    }
  }

  #nextLink(links: unknown): string | undefined {
    if (!Array.isArray(links)) return undefined;
    const next = links.find((l) => isJsonObject(l) && l.relation === 'next');
    if (!isJsonObject(next) || typeof next.url !== 'string') return undefined;
    const url = new URL(next.url, this.#base);
    if (url.origin !== this.#base.origin) {
      throw new SluiceError(
        'SRC_BAD_RESPONSE',
        `The EHR's next link points to another origin (${url.origin}); refusing to follow it.`,
      );
    }
    return url.toString();
  }

  /** Reads one resource by type and id (`GET [base]/Type/id`). */
  read(resourceType: string, id: string, signal: AbortSignal): Promise<unknown> {
    return this.get(new URL(`${resourceType}/${encodeURIComponent(id)}`, this.#base).toString(), signal);
  }

  /** GET a URL under the base with the bearer token, retrying transient failures; renews the token once on 401. */
  async get(url: string, signal: AbortSignal): Promise<unknown> {
    return (await this.#getResponse(url, signal)).body;
  }

  async #getResponse(url: string, signal: AbortSignal): Promise<JsonResponse> {
    try {
      return await this.#config.retry.execute(() => this.#authorizedGet(url, signal), signal);
    } catch (err) {
      throw translateError(err, url);
    }
  }

  async #authorizedGet(url: string, signal: AbortSignal): Promise<JsonResponse> {
    const attempt = async (): Promise<JsonResponse> => {
      const headers: Record<string, string> = { accept: 'application/fhir+json' };
      if (this.#config.auth) headers.authorization = `Bearer ${await this.#config.auth.token(signal)}`;
      return requestJson(url, { headers, signal, timeoutMs: this.#config.timeoutMs ?? 60_000 }, 'EHR');
    };
    try {
      return await attempt();
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 401 && this.#config.auth) {
        this.#config.auth.invalidate();
        return attempt();
      }
      throw err;
    }
  }
}

/**
 * The server's own time of an answer: the earlier of a searchset's `meta.lastUpdated` (when the server
 * ran the search; a cached result set keeps its first time) and the `Date` header (whole seconds).
 */
export function serverTimeOf(meta: unknown, dateHeader: string | null): string | undefined {
  const times: number[] = [];
  if (isJsonObject(meta) && typeof meta.lastUpdated === 'string' && isFhirInstant(meta.lastUpdated)) {
    const t = Date.parse(meta.lastUpdated);
    if (Number.isFinite(t)) times.push(t);
  }
  if (dateHeader !== null) {
    const t = Date.parse(dateHeader);
    if (Number.isFinite(t)) times.push(t);
  }
  return times.length === 0 ? undefined : new Date(Math.min(...times)).toISOString();
}

function translateError(err: unknown, url: string): unknown {
  if (err instanceof SluiceError) return err;
  const path = new URL(url).pathname;
  if (err instanceof HttpStatusError) {
    if (err.status === 401 || err.status === 403) {
      return new SluiceError(
        'SRC_FORBIDDEN',
        `The EHR refused GET ${path}: HTTP ${err.status}${err.codes.length ? ` (${err.codes.join(', ')})` : ''}.`,
        {
          cause: err,
          details: { status: err.status },
        },
      );
    }
    return new SluiceError(
      'SRC_HTTP_ERROR',
      `The EHR answered GET ${path} with HTTP ${err.status}${err.codes.length ? ` (${err.codes.join(', ')})` : ''}.`,
      {
        cause: err,
        details: { status: err.status },
      },
    );
  }
  if (err instanceof NetworkError) {
    return new SluiceError('SRC_UNREACHABLE', `${err.message} (GET ${path}).`, { cause: err });
  }
  return err;
}
