import { type CrmClient, type CrmSandbox, DEMO_CRM_CLIENT } from './index.ts';

/**
 * Helpers for tests that talk to a CRM sandbox over real HTTP. Test-only: nothing in production
 * imports this module.
 */

export const TEST_API_VERSION = 'v62.0';

export interface CrmResponse<T = unknown> {
  readonly status: number;
  readonly headers: Headers;
  /** Parsed JSON, or undefined for an empty body. */
  readonly body: T;
}

/** `/services/data/v62.0` + `suffix`. */
export function apiPath(suffix: string, version = TEST_API_VERSION): string {
  return `/services/data/${version}${suffix.startsWith('/') ? suffix : `/${suffix}`}`;
}

async function readResponse<T>(response: Response): Promise<CrmResponse<T>> {
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: (text === '' ? undefined : JSON.parse(text)) as T,
  };
}

/** Logs in with client credentials and returns the token response. */
export async function crmLogin(
  sandbox: Pick<CrmSandbox, 'url'>,
  client: CrmClient = DEMO_CRM_CLIENT,
): Promise<CrmResponse<Record<string, string>>> {
  const response = await fetch(`${sandbox.url}/services/oauth2/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: client.clientId,
      client_secret: client.clientSecret,
    }),
  });
  return readResponse(response);
}

/** An access token for the demo client (or `client`); throws if the login fails. */
export async function crmToken(
  sandbox: Pick<CrmSandbox, 'url'>,
  client: CrmClient = DEMO_CRM_CLIENT,
): Promise<string> {
  const response = await crmLogin(sandbox, client);
  const token = response.body.access_token;
  if (response.status !== 200 || typeof token !== 'string') {
    throw new Error(`CRM sandbox login failed with HTTP ${response.status}`);
  }
  return token;
}

/** One authenticated request; `path` is absolute (`/services/…`) and `body` is sent as JSON. */
export async function crmFetch<T = unknown>(
  sandbox: Pick<CrmSandbox, 'url'>,
  token: string | undefined,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<CrmResponse<T>> {
  const all: Record<string, string> = { ...headers };
  if (token !== undefined) all.authorization = `Bearer ${token}`;
  if (body !== undefined) all['content-type'] = 'application/json';
  const response = await fetch(`${sandbox.url}${path}`, {
    method,
    headers: all,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return readResponse<T>(response);
}

/** `PATCH /sobjects/{object}/{field}/{value}`: 201 created, 204 updated, 300 ambiguous, 4xx errors. */
export function upsert(
  sandbox: Pick<CrmSandbox, 'url'>,
  token: string,
  object: string,
  externalIdField: string,
  value: string,
  fields: Record<string, unknown>,
  options: { updateOnly?: boolean } = {},
): Promise<CrmResponse> {
  const query = options.updateOnly ? '?updateOnly=true' : '';
  return crmFetch(
    sandbox,
    token,
    'PATCH',
    apiPath(`/sobjects/${object}/${externalIdField}/${encodeURIComponent(value)}${query}`),
    fields,
  );
}

export interface CollectionResult {
  readonly id?: string;
  readonly success: boolean;
  readonly created?: boolean;
  readonly errors: readonly { statusCode: string; message: string; fields: readonly string[] }[];
}

/** `PATCH /composite/sobjects/{object}/{field}` with the records (attributes.type added). */
export function collectionsUpsert(
  sandbox: Pick<CrmSandbox, 'url'>,
  token: string,
  object: string,
  externalIdField: string,
  records: readonly Record<string, unknown>[],
  allOrNone = false,
): Promise<CrmResponse<CollectionResult[]>> {
  return crmFetch(sandbox, token, 'PATCH', apiPath(`/composite/sobjects/${object}/${externalIdField}`), {
    allOrNone,
    records: records.map((r) => ({ attributes: { type: object }, ...r })),
  });
}

export interface QueryPage {
  readonly totalSize: number;
  readonly done: boolean;
  readonly nextRecordsUrl?: string;
  readonly records: Record<string, unknown>[];
}

/** One SOQL page (`query`, or `queryAll` with `all`). */
export function soql(
  sandbox: Pick<CrmSandbox, 'url'>,
  token: string,
  q: string,
  options: { all?: boolean; batchSize?: number } = {},
): Promise<CrmResponse<QueryPage>> {
  const headers: Record<string, string> =
    options.batchSize === undefined ? {} : { 'sforce-query-options': `batchSize=${options.batchSize}` };
  const kind = options.all ? 'queryAll' : 'query';
  return crmFetch(sandbox, token, 'GET', apiPath(`/${kind}?q=${encodeURIComponent(q)}`), undefined, headers);
}

/** Every record of a query, following `nextRecordsUrl`. */
export async function soqlAll(
  sandbox: Pick<CrmSandbox, 'url'>,
  token: string,
  q: string,
  options: { all?: boolean; batchSize?: number } = {},
): Promise<Record<string, unknown>[]> {
  let page = await soql(sandbox, token, q, options);
  const records: Record<string, unknown>[] = [];
  for (;;) {
    if (page.status !== 200) throw new Error(`CRM sandbox query failed with HTTP ${page.status}`);
    records.push(...page.body.records);
    if (page.body.done || !page.body.nextRecordsUrl) return records;
    page = await crmFetch<QueryPage>(sandbox, token, 'GET', page.body.nextRecordsUrl);
  }
}

/** Stores records as given through `POST /__sandbox/records` (no uniqueness checks); returns their ids. */
export async function seedRecords(
  sandbox: Pick<CrmSandbox, 'url'>,
  object: string,
  records: readonly Record<string, unknown>[],
): Promise<string[]> {
  const response = await crmFetch<{ ids: string[] }>(sandbox, undefined, 'POST', '/__sandbox/records', {
    records: records.map((r) => ({ attributes: { type: object }, ...r })),
  });
  if (response.status !== 201) throw new Error(`CRM sandbox seeding failed with HTTP ${response.status}`);
  return response.body.ids;
}

/** Sets the daily API allocation and/or the count used so far. */
export async function setCrmLimits(
  sandbox: Pick<CrmSandbox, 'url'>,
  change: { dailyRequestLimit?: number; used?: number },
): Promise<void> {
  const response = await crmFetch(sandbox, undefined, 'POST', '/__sandbox/limits', change);
  if (response.status !== 200)
    throw new Error(`CRM sandbox limits change failed with HTTP ${response.status}`);
}

/** A controllable clock for `CrmSandboxOptions.now`. */
export function fakeClock(start = '2025-01-15T09:00:00.000Z'): {
  now: () => Date;
  advance(ms: number): void;
  set(iso: string): void;
} {
  let current = Date.parse(start);
  return {
    now: () => new Date(current),
    advance(ms: number) {
      current += ms;
    },
    set(iso: string) {
      current = Date.parse(iso);
    },
  };
}
