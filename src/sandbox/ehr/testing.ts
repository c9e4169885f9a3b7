/**
 * Helpers for tests that talk to the EHR sandbox over HTTP: signing SMART Backend Services client
 * assertions with the demo keys, getting tokens, FHIR requests, bulk export polling, a fake clock.
 * Test-only: production code does not import this module.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import type { ExportManifest } from './bulk-export.ts';
import { DEMO_CLIENT_ID, DEMO_KEYS_DIR, type RegisteredClient } from './clients.ts';
import { CLIENT_ASSERTION_TYPE } from './smart-auth.ts';

export type ClientAlg = 'RS384' | 'ES384';

/** The sandbox URLs a helper needs (an `EhrSandbox` fits). */
export interface SandboxUrls {
  readonly url: string;
  readonly tokenUrl: string;
}

const KID: Record<ClientAlg, string> = { RS384: 'rs384-2026-11-23', ES384: 'es384-2026-11-23' };

/** The demo client's private key for an algorithm (examples/keys/ehr-client-*.private.jwk.json). */
export function demoPrivateKey(alg: ClientAlg): JWK {
  const file = alg === 'RS384' ? 'ehr-client-rs384.private.jwk.json' : 'ehr-client-es384.private.jwk.json';
  return JSON.parse(readFileSync(resolve(DEMO_KEYS_DIR, file), 'utf8')) as JWK;
}

export interface AssertionOptions {
  readonly tokenUrl: string;
  readonly clientId?: string;
  readonly alg?: ClientAlg;
  /** Private key to sign with; default the demo key for `alg`. */
  readonly key?: JWK;
  readonly kid?: string;
  /** Clock for iat/exp; default now. */
  readonly now?: Date;
  /** exp − now in seconds; default 240. */
  readonly expiresInSeconds?: number;
  readonly jti?: string;
  /** Overrides for adversarial tests. */
  readonly aud?: string;
  readonly iss?: string;
  readonly sub?: string;
}

/** Signs a client assertion JWT as a SMART Backend Services client does. */
export async function signClientAssertion(options: AssertionOptions): Promise<string> {
  const alg = options.alg ?? 'RS384';
  const clientId = options.clientId ?? DEMO_CLIENT_ID;
  const nowSeconds = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const key = await importJWK(options.key ?? demoPrivateKey(alg), alg);
  return new SignJWT({})
    .setProtectedHeader({
      alg,
      typ: 'JWT',
      kid: options.kid ?? (typeof options.key?.kid === 'string' ? options.key.kid : KID[alg]),
    })
    .setIssuer(options.iss ?? clientId)
    .setSubject(options.sub ?? clientId)
    .setAudience(options.aud ?? options.tokenUrl)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + (options.expiresInSeconds ?? 240))
    .setJti(options.jti ?? randomUUID())
    .sign(key);
}

/** Posts a token request; returns the raw response (tests assert on errors too). */
export async function requestToken(
  tokenUrl: string,
  assertion: string,
  scope?: string,
  extra: Record<string, string> = {},
): Promise<Response> {
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: assertion,
    ...(scope === undefined ? {} : { scope }),
    ...extra,
  });
  return fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form,
  });
}

export interface GetTokenOptions extends Omit<AssertionOptions, 'tokenUrl'> {
  /** Default `system/*.read`. */
  readonly scope?: string;
}

/** Gets an access token from the sandbox (throws with the OAuth error when refused). */
export async function getToken(
  sandbox: Pick<SandboxUrls, 'tokenUrl'>,
  options: GetTokenOptions = {},
): Promise<string> {
  const assertion = await signClientAssertion({ ...options, tokenUrl: sandbox.tokenUrl });
  const response = await requestToken(sandbox.tokenUrl, assertion, options.scope ?? 'system/*.read');
  const body = (await response.json()) as {
    access_token?: string;
    error?: string;
    error_description?: string;
  };
  if (response.status !== 200 || !body.access_token) {
    throw new Error(`token request refused: ${response.status} ${body.error} ${body.error_description}`);
  }
  return body.access_token;
}

/** A FHIR request: `path` is relative to the FHIR base (`Patient/1`) or an absolute URL. */
export function fhirFetch(
  sandbox: SandboxUrls,
  path: string,
  token: string | undefined,
  init: RequestInit = {},
) {
  const url = /^https?:/.test(path) ? path : `${sandbox.url}/${path.replace(/^\/+/, '')}`;
  const headers = new Headers(init.headers);
  headers.set('accept', 'application/fhir+json');
  if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
  if (init.body !== undefined && !headers.has('content-type'))
    headers.set('content-type', 'application/fhir+json');
  return fetch(url, { ...init, headers });
}

/** GETs FHIR JSON and fails loudly on a non-2xx status. */
export async function fhirGetJson<T = Record<string, unknown>>(
  sandbox: SandboxUrls,
  path: string,
  token: string,
): Promise<T> {
  const response = await fhirFetch(sandbox, path, token);
  if (!response.ok) throw new Error(`GET ${path} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

/** Starts a `$export` (path like `$export?_type=Patient`); returns the status URL. */
export async function kickOffExport(sandbox: SandboxUrls, path: string, token: string): Promise<string> {
  const response = await fhirFetch(sandbox, path, token, { headers: { prefer: 'respond-async' } });
  if (response.status !== 202)
    throw new Error(`kick-off answered ${response.status}: ${await response.text()}`);
  const location = response.headers.get('content-location');
  if (!location) throw new Error('kick-off answered without Content-Location');
  return location;
}

/** Polls a bulk export status URL until the manifest is ready (polls every 20 ms; no Retry-After wait). */
export async function waitForExport(
  statusUrl: string,
  token: string,
  timeoutMs = 20_000,
): Promise<ExportManifest> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await fetch(statusUrl, { headers: { authorization: `Bearer ${token}` } });
    if (response.status === 200) return (await response.json()) as ExportManifest;
    if (response.status !== 202)
      throw new Error(`export status answered ${response.status}: ${await response.text()}`);
    await response.arrayBuffer();
    if (Date.now() > deadline) throw new Error('export did not finish in time');
    await sleep(20);
  }
}

/** Downloads an NDJSON file and parses its lines. */
export async function readNdjson<T = Record<string, unknown>>(url: string, token: string): Promise<T[]> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (response.status !== 200) throw new Error(`GET ${url} answered ${response.status}`);
  const text = await response.text();
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

/** A clock tests move by hand. */
export interface FakeClock {
  readonly now: () => Date;
  advance(ms: number): void;
  set(date: Date): void;
}

export function fakeClock(start: Date = new Date('2026-11-23T10:00:00.000Z')): FakeClock {
  let current = start.getTime();
  return {
    now: () => new Date(current),
    advance: (ms) => {
      current += ms;
    },
    set: (date) => {
      current = date.getTime();
    },
  };
}

/**
 * The folder of Synthea transaction bundles to seed with: the 60 patients of the shared data set when
 * this machine has it, else the 9 shipped in examples/data.
 */
export function syntheaBundleDir(): string {
  const shared = sharedDataDir();
  return shared ? join(shared, 'synthea', 'bundles') : join(SAMPLE_DATA_DIR, 'synthea');
}

/** The first `limit` Synthea bundle files (sorted), for tests that need only a few patients. */
export function syntheaBundleFiles(limit?: number): string[] {
  const dir = syntheaBundleDir();
  const names = readdirSync(dir)
    .filter((n) => n.endsWith('.json.gz'))
    .sort();
  return names.slice(0, limit).map((n) => join(dir, n));
}

/** A freshly generated client (key pair) to register with `startEhrSandbox({clients})`. */
export async function generateClient(
  clientId: string,
  scope: string,
  alg: ClientAlg = 'ES384',
): Promise<{ client: RegisteredClient; privateKey: JWK; alg: ClientAlg }> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${clientId}-${alg.toLowerCase()}`;
  const publicJwk = { ...(await exportJWK(publicKey)), alg, kid, use: 'sig' };
  const privateJwk = { ...(await exportJWK(privateKey)), alg, kid };
  return { client: { clientId, jwks: { keys: [publicJwk] }, scope }, privateKey: privateJwk, alg };
}

/** The provider directory NDJSON (Practitioner, Organization) shipped in examples/data. */
export const SAMPLE_DIRECTORY_DIR = join(SAMPLE_DATA_DIR, 'directory');
