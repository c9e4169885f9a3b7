import type { RetryPolicy } from 'cockatiel';
import { SluiceError } from '../../core/errors/index.ts';
import { isJsonObject } from '../../core/fhir/resource.ts';
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
      const bundle = await this.get(url, signal);
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
      const page: { -readonly [K in keyof SearchPage]: SearchPage[K] } = { resources, outcomes, url };
      if (typeof bundle.total === 'number') page.total = bundle.total;
      yield page;
      url = this.#nextLink(bundle.link);
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
    try {
      const response = await this.#config.retry.execute(() => this.#authorizedGet(url, signal), signal);
      return response.body;
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
