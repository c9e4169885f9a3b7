import { randomUUID } from 'node:crypto';
import { importJWK, type JWK, SignJWT } from 'jose';
import { SluiceError } from '../../core/errors/index.ts';
import { HttpStatusError } from '../http/http-error.ts';
import { requestJson } from '../http/request.ts';

export interface BackendServicesConfig {
  /** The FHIR base URL; the token endpoint is discovered from `.well-known/smart-configuration`. */
  readonly baseUrl: string;
  /** Overrides discovery. */
  readonly tokenUrl?: string;
  readonly clientId: string;
  /** Private signing key (JWK with `alg` RS384 or ES384 and a `kid`). */
  readonly privateKey: JWK;
  /** Space-separated SMART scopes to request, e.g. `system/Patient.rs system/Practitioner.rs`. */
  readonly scope: string;
  readonly now?: () => number;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Renew this long before the token expires, so a request never leaves with a dying token. */
const RENEW_MARGIN_MS = 30_000;

/**
 * SMART Backend Services (client-confidential-asymmetric): signs a one-time JWT assertion with the
 * client's private key and trades it for a short-lived access token, cached until shortly before it
 * expires. Least privilege: it asks only for the scopes the flow needs.
 */
export class BackendServicesAuth {
  readonly #config: BackendServicesConfig;
  readonly #now: () => number;
  #tokenUrl: string | undefined;
  #token: { value: string; expiresAt: number; scope: string } | undefined;
  #pending: Promise<string> | undefined;

  constructor(config: BackendServicesConfig) {
    const alg = config.privateKey.alg;
    if (alg !== 'RS384' && alg !== 'ES384') {
      throw new SluiceError(
        'CFG_KEY_INVALID',
        `source.auth.privateKey must be an RS384 or ES384 JWK with "alg" set (got ${String(alg)}).`,
      );
    }
    this.#config = config;
    this.#now = config.now ?? Date.now;
    this.#tokenUrl = config.tokenUrl;
  }

  /** The scopes the server actually granted (known after the first token). */
  get grantedScope(): string | undefined {
    return this.#token?.scope;
  }

  async token(signal?: AbortSignal): Promise<string> {
    if (this.#token && this.#token.expiresAt - RENEW_MARGIN_MS > this.#now()) return this.#token.value;
    this.#pending ??= this.#fetchToken(signal).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /** Forgets the cached token (after a 401), so the next call fetches a new one. */
  invalidate(): void {
    this.#token = undefined;
  }

  async #discover(signal?: AbortSignal): Promise<string> {
    if (this.#tokenUrl) return this.#tokenUrl;
    const url = `${this.#config.baseUrl.replace(/\/$/, '')}/.well-known/smart-configuration`;
    const response = await requestJson(url, signal ? { signal } : {}, 'EHR SMART discovery');
    const body = response.body as { token_endpoint?: unknown } | undefined;
    if (typeof body?.token_endpoint !== 'string') {
      throw new SluiceError(
        'SRC_BAD_RESPONSE',
        `The EHR's smart-configuration at ${url} has no token_endpoint.`,
      );
    }
    this.#tokenUrl = body.token_endpoint;
    return this.#tokenUrl;
  }

  async #fetchToken(signal?: AbortSignal): Promise<string> {
    const tokenUrl = await this.#discover(signal);
    const { privateKey, clientId } = this.#config;
    const alg = privateKey.alg as string;
    const key = await importJWK(privateKey, alg);
    const nowSeconds = Math.floor(this.#now() / 1000);
    const header: { alg: string; typ: string; kid?: string } = { alg, typ: 'JWT' };
    if (privateKey.kid) header.kid = privateKey.kid;
    const assertion = await new SignJWT({})
      .setProtectedHeader(header)
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(tokenUrl)
      .setJti(randomUUID())
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + 240)
      .sign(key);
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
      scope: this.#config.scope,
    });
    let body: { access_token?: unknown; expires_in?: unknown; scope?: unknown };
    try {
      const response = await requestJson(
        tokenUrl,
        { method: 'POST', body: form, ...(signal ? { signal } : {}) },
        'EHR token endpoint',
      );
      body = (response.body ?? {}) as typeof body;
    } catch (err) {
      if (err instanceof HttpStatusError && !err.transient) {
        throw new SluiceError(
          'SRC_AUTH_FAILED',
          `The EHR token endpoint refused client ${clientId}: HTTP ${err.status}${err.codes.length ? ` ${err.codes.join(', ')}` : ''}.`,
          { cause: err, details: { status: err.status } },
        );
      }
      throw err;
    }
    if (typeof body.access_token !== 'string') {
      throw new SluiceError('SRC_BAD_RESPONSE', 'The EHR token response has no access_token.');
    }
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 300;
    this.#token = {
      value: body.access_token,
      expiresAt: this.#now() + expiresIn * 1000,
      scope: typeof body.scope === 'string' ? body.scope : this.#config.scope,
    };
    return this.#token.value;
  }
}
