import { getSearchParameter, getStatus, isOperationOutcome, parseSearchRequest } from '@medplum/core';
import type { FhirRequest, FhirRouter, HttpMethod, RestInteraction } from '@medplum/fhir-router';
import type { Bundle, BundleEntry, BundleLink, Resource } from '@medplum/fhirtypes';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FHIR_PREFIX, type SandboxAddress } from './address.ts';
import { capabilityStatement } from './capability.ts';
import type { FhirDefinitions } from './definitions.ts';
import { sendFhir, sendOutcome } from './fhir-reply.ts';
import { type Need, requireBearer, requireScopes } from './http-auth.ts';
import type { SandboxRepository } from './repository.ts';
import type { SmartAuth } from './smart-auth.ts';

export interface FhirRoutesContext {
  readonly repo: SandboxRepository;
  readonly router: FhirRouter;
  readonly auth: SmartAuth;
  readonly defs: FhirDefinitions;
  readonly address: SandboxAddress;
  readonly now: () => Date;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

const FHIR_METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** Body types the FHIR endpoints and the token endpoint accept. */
export function registerBodyParsers(app: FastifyInstance): void {
  app.addContentTypeParser(
    ['application/fhir+json', 'application/json-patch+json'],
    { parseAs: 'string' },
    (_request, body, done) => {
      const text = typeof body === 'string' ? body : body.toString('utf8');
      if (text.trim() === '') {
        done(null, undefined);
        return;
      }
      try {
        done(null, JSON.parse(text));
      } catch {
        done(Object.assign(new Error('The request body is not valid JSON.'), { statusCode: 400 }), undefined);
      }
    },
  );
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_request, body, done) => {
      const text = typeof body === 'string' ? body : body.toString('utf8');
      done(null, Object.fromEntries(new URLSearchParams(text)));
    },
  );
}

/**
 * Serves medplum's FhirRouter over HTTP under `/fhir`: `GET /fhir/metadata` (public) and everything
 * else with a bearer token whose scopes cover the interaction. Adds what the router leaves out:
 * paging links and totals, `fullUrl`s, `ETag`/`Last-Modified`/`Location` headers, page-size limits.
 */
export function registerFhirRoutes(app: FastifyInstance, ctx: FhirRoutesContext): void {
  let metadata: { base: string; body: string } | undefined;
  app.get(`${FHIR_PREFIX}/metadata`, async (_request, reply) => {
    const base = ctx.address.fhirBase;
    if (metadata?.base !== base) {
      const statement = capabilityStatement(ctx.address, ctx.defs.resourceTypes, ctx.now().toISOString());
      metadata = { base, body: JSON.stringify(statement) };
    }
    return reply.code(200).type('application/fhir+json; charset=utf-8').send(metadata.body);
  });

  const handler = (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> =>
    handle(ctx, request, reply);
  app.route({ method: [...FHIR_METHODS], url: FHIR_PREFIX, handler });
  app.route({ method: [...FHIR_METHODS], url: `${FHIR_PREFIX}/*`, handler });
}

async function handle(
  ctx: FhirRoutesContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const token = requireBearer(ctx.auth, request, reply);
  if (!token) return reply;

  let method = request.method as HttpMethod;
  const relative = request.url.slice(FHIR_PREFIX.length).replace(/^\/+/, '');
  const queryStart = relative.indexOf('?');
  let path = queryStart < 0 ? relative : relative.slice(0, queryStart);
  const query = new URLSearchParams(queryStart < 0 ? '' : relative.slice(queryStart + 1));

  let route: ReturnType<FhirRouter['find']>;
  try {
    route = ctx.router.find(method, path);
  } catch {
    return sendOutcome(reply, 400, 'The request URL is too long.');
  }
  if (!route) return sendOutcome(reply, 404, `No FHIR interaction at ${method} ${FHIR_PREFIX}/${path}.`);
  const interaction = route.data?.interaction;
  const resourceType = route.params.resourceType;
  if (resourceType !== undefined && !ctx.defs.isResourceType(resourceType)) {
    return sendOutcome(reply, 404, `Unknown resource type ${safeName(resourceType)}.`);
  }

  const needs = requiredScopes(interaction, resourceType, request.body);
  if (typeof needs === 'string') return sendOutcome(reply, 400, needs);
  if (!requireScopes(token, needs, reply)) return reply;

  let page: { count: number; offset: number } | undefined;
  if (interaction === 'search-type' && resourceType !== undefined) {
    if (method === 'POST') {
      // POST Type/_search: the form body is the query; answer as the equivalent GET.
      for (const [key, value] of formQuery(request.body)) query.append(key, value);
      method = 'GET';
      path = resourceType;
    }
    const checked = checkSearchQuery(resourceType, query);
    if (typeof checked === 'string') return sendOutcome(reply, 400, checked);
    page = checked;
  } else if ((method === 'POST' || method === 'PUT') && !isObject(request.body)) {
    return sendOutcome(reply, 400, 'The request body must be a FHIR resource (application/fhir+json).');
  }

  const fhirRequest: FhirRequest = {
    method,
    url: query.size > 0 ? `${path}?${query.toString()}` : path,
    pathname: '',
    body: method === 'GET' ? undefined : request.body,
    params: {},
    query: {},
    headers: normalizeHeaders(request.headers),
  };
  const [outcome, resource] = await ctx.router.handleRequest(fhirRequest, ctx.repo);
  const status = getStatus(outcome);
  if (status >= 400 || !resource) return sendFhir(reply, status, outcome);

  const base = ctx.address.fhirBase;
  switch (interaction) {
    case 'search-type':
      return sendFhir(reply, 200, searchset(resource as Bundle, base, path, query, page));
    case 'history-instance':
      return sendFhir(reply, 200, history(resource as Bundle, base, path, query));
    case 'read':
    case 'vread':
    case 'update':
    case 'patch':
    case 'create': {
      versionHeaders(reply, resource);
      if (status === 201 && resource.id) {
        const location = `${base}/${resource.resourceType}/${resource.id}`;
        const versionId = resource.meta?.versionId;
        reply.header('location', versionId ? `${location}/_history/${versionId}` : location);
      }
      return sendFhir(reply, status, resource);
    }
    default:
      return sendFhir(reply, status, isOperationOutcome(resource) ? resource : withFullUrls(resource, base));
  }
}

/** The scopes an interaction needs, or a message when it cannot be allowed at all. */
function requiredScopes(
  interaction: RestInteraction | undefined,
  resourceType: string | undefined,
  body: unknown,
): readonly Need[] | string {
  const type = resourceType ?? '*';
  switch (interaction) {
    case 'read':
    case 'vread':
    case 'history-instance':
      return [[type, 'r']];
    case 'search-type':
      return [[type, 's']];
    case 'create':
      return [[type, 'c']];
    case 'update':
    case 'patch':
      return [[type, 'u']];
    case 'delete':
      return [[type, 'd']];
    case 'batch':
    case 'transaction':
      return batchNeeds(body);
    case 'search-system':
      return 'System-level search is not supported; search one resource type at a time.';
    default:
      // $graphql and anything else that can reach every type needs a wildcard scope.
      return [
        ['*', 'r'],
        ['*', 's'],
      ];
  }
}

function batchNeeds(body: unknown): readonly Need[] | string {
  if (!isObject(body) || body.resourceType !== 'Bundle') return 'The request body must be a Bundle.';
  const needs: Need[] = [];
  for (const entry of Array.isArray(body.entry) ? (body.entry as unknown[]) : []) {
    const req = isObject(entry) && isObject(entry.request) ? entry.request : undefined;
    const url = typeof req?.url === 'string' ? req.url.replace(/^\/+/, '') : '';
    const type = /^[A-Za-z]+/.exec(url)?.[0];
    if (!type) return 'Every Bundle entry needs request.url naming a resource type.';
    switch (req?.method) {
      case 'GET':
      case 'HEAD':
        needs.push([type, url.includes('?') || !url.includes('/') ? 's' : 'r']);
        break;
      case 'POST':
        needs.push([type, 'c']);
        break;
      case 'PUT':
      case 'PATCH':
        needs.push([type, 'u']);
        break;
      case 'DELETE':
        needs.push([type, 'd']);
        break;
      default:
        return 'Every Bundle entry needs request.method.';
    }
  }
  return needs;
}

/**
 * Checks and normalizes a search query in place: `_count` (default 100, at most 1000), `_offset`, and
 * every other parameter must be a search parameter of the type. Returns the page or a message.
 */
function checkSearchQuery(
  resourceType: string,
  query: URLSearchParams,
): { count: number; offset: number } | string {
  const countText = query.getAll('_count').at(-1);
  const offsetText = query.getAll('_offset').at(-1);
  if (countText !== undefined && !/^\d{1,9}$/.test(countText))
    return '_count must be a non-negative integer.';
  if (offsetText !== undefined && !/^\d{1,9}$/.test(offsetText))
    return '_offset must be a non-negative integer.';
  const summaryCount = query.getAll('_summary').at(-1) === 'count';
  const requested = countText === undefined ? DEFAULT_PAGE_SIZE : Number(countText);
  const count = summaryCount ? 0 : Math.min(MAX_PAGE_SIZE, requested);
  const offset = offsetText === undefined ? 0 : Number(offsetText);
  query.set('_count', String(count));
  query.set('_offset', String(offset));

  let filters: { code: string }[];
  try {
    filters = parseSearchRequest(resourceType, Object.fromEntries(groupQuery(query))).filters ?? [];
  } catch (err) {
    const text = (err as { outcome?: { issue?: { details?: { text?: string } }[] } }).outcome?.issue?.[0]
      ?.details?.text;
    return text ?? 'The search query is not valid.';
  }
  for (const filter of filters) {
    if (filter.code.includes('.') || filter.code.startsWith('_has')) continue;
    if (!getSearchParameter(resourceType, filter.code)) {
      return `Unknown search parameter ${safeName(filter.code)} for ${resourceType}.`;
    }
  }
  return { count, offset };
}

function searchset(
  bundle: Bundle,
  base: string,
  path: string,
  query: URLSearchParams,
  page: { count: number; offset: number } | undefined,
): Bundle {
  const total = bundle.total ?? bundle.entry?.length ?? 0;
  const link: BundleLink[] = [{ relation: 'self', url: `${base}/${path}?${query.toString()}` }];
  if (page && page.count > 0 && page.offset + page.count < total) {
    const next = new URLSearchParams(query);
    next.set('_offset', String(page.offset + page.count));
    link.push({ relation: 'next', url: `${base}/${path}?${next.toString()}` });
  }
  return { ...withFullUrls(bundle, base), resourceType: 'Bundle', type: 'searchset', total, link };
}

function history(bundle: Bundle, base: string, path: string, query: URLSearchParams): Bundle {
  const self = query.size > 0 ? `${base}/${path}?${query.toString()}` : `${base}/${path}`;
  return { ...withFullUrls(bundle, base), link: [{ relation: 'self', url: self }] };
}

function withFullUrls<T extends Resource>(resource: T, base: string): T {
  if (resource.resourceType !== 'Bundle' || !resource.entry) return resource;
  const entry = resource.entry.map((e): BundleEntry => {
    const r = e.resource;
    if (r?.id) return { fullUrl: `${base}/${r.resourceType}/${r.id}`, ...e };
    const url = e.request?.url;
    return url && e.request?.method === 'DELETE' ? { fullUrl: `${base}/${url}`, ...e } : e;
  });
  return { ...resource, entry };
}

function versionHeaders(reply: FastifyReply, resource: Resource): void {
  const versionId = resource.meta?.versionId;
  if (versionId) reply.header('etag', `W/"${versionId}"`);
  const lastUpdated = resource.meta?.lastUpdated;
  if (lastUpdated) reply.header('last-modified', new Date(lastUpdated).toUTCString());
}

/** `If-Match: 3` is accepted as `W/"3"` (the router only reads quoted values). */
function normalizeHeaders(headers: FastifyRequest['headers']): FastifyRequest['headers'] {
  const ifMatch = headers['if-match'];
  if (typeof ifMatch !== 'string' || ifMatch.includes('"')) return headers;
  return { ...headers, 'if-match': `W/"${ifMatch.trim()}"` };
}

function formQuery(body: unknown): URLSearchParams {
  const query = new URLSearchParams();
  if (isObject(body))
    for (const [k, v] of Object.entries(body)) if (typeof v === 'string') query.append(k, v);
  return query;
}

function groupQuery(query: URLSearchParams): Map<string, string | string[]> {
  const out = new Map<string, string | string[]>();
  for (const [key, value] of query) {
    const existing = out.get(key);
    out.set(key, existing === undefined ? value : [existing, value].flat());
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Echo a name from the request only when it looks like a name. */
function safeName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_:-]{0,63}$/.test(name) ? name : '(invalid name)';
}
