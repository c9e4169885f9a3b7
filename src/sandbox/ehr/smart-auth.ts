import { randomBytes } from 'node:crypto';
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
} from 'jose';
import { type RegisteredClient, SUPPORTED_ALGS } from './clients.ts';
import { grantScopes, parseScopes, type SmartScope } from './scopes.ts';

/**
 * SMART Backend Services authorization (client_credentials grant with a signed JWT client assertion),
 * framework-agnostic: `token()` takes the parsed form and returns the OAuth answer as a value;
 * `authenticate()` resolves a bearer token. Access tokens are opaque and held in memory.
 */

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const MAX_TOKEN_LIFETIME_SECONDS = 300;
/** An assertion's `exp` may be at most this far ahead (SMART Backend Services, Epic). */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;
/** Slack for clients that round `exp` up to the next second. */
const EXP_ROUNDING_MS = 1000;

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unsupported_grant_type'
  | 'invalid_scope';

export interface TokenResponseBody {
  readonly access_token: string;
  readonly token_type: 'bearer';
  readonly expires_in: number;
  readonly scope: string;
}

export type TokenResult =
  | { readonly ok: true; readonly body: TokenResponseBody }
  | {
      readonly ok: false;
      readonly status: 400 | 401;
      readonly error: OAuthErrorCode;
      readonly description: string;
    };

export interface AccessToken {
  readonly clientId: string;
  readonly scopes: readonly SmartScope[];
  readonly expiresAtMs: number;
}

export type BearerResult =
  | { readonly ok: true; readonly token: AccessToken }
  | { readonly ok: false; readonly description: string };

export interface SmartAuthOptions {
  readonly clients: readonly RegisteredClient[];
  /** The token endpoint URL, which assertions must name as `aud` (known once the server listens). */
  readonly tokenUrl: () => string;
  /** Clamped to 1..300; default 300. */
  readonly tokenLifetimeSeconds?: number;
  readonly now: () => Date;
}

interface ClientEntry {
  readonly client: RegisteredClient;
  readonly keys: JWTVerifyGetKey;
  readonly allowed: readonly SmartScope[];
}

export class SmartAuth {
  readonly #clients = new Map<string, ClientEntry>();
  readonly #tokens = new Map<string, AccessToken>();
  /** `clientId \0 jti` → the assertion's expiry; a jti is refused while its assertion could still be valid. */
  readonly #usedJtis = new Map<string, number>();
  readonly #tokenUrl: () => string;
  readonly #lifetimeSeconds: number;
  readonly #now: () => Date;
  #lastSweepMs = 0;

  constructor(options: SmartAuthOptions) {
    for (const client of options.clients) {
      this.#clients.set(client.clientId, {
        client,
        keys: createLocalJWKSet(client.jwks),
        allowed: parseScopes(client.scope).scopes,
      });
    }
    this.#tokenUrl = options.tokenUrl;
    const lifetime = Math.floor(options.tokenLifetimeSeconds ?? MAX_TOKEN_LIFETIME_SECONDS);
    this.#lifetimeSeconds = Math.min(MAX_TOKEN_LIFETIME_SECONDS, Math.max(1, lifetime));
    this.#now = options.now;
  }

  get tokenLifetimeSeconds(): number {
    return this.#lifetimeSeconds;
  }

  /** Handles a token request (the form fields of `POST /auth/token`). */
  async token(form: Readonly<Record<string, string | undefined>>): Promise<TokenResult> {
    const nowMs = this.#now().getTime();
    this.#sweep(nowMs);

    if (!form.grant_type) return fail(400, 'invalid_request', 'grant_type is required');
    if (form.grant_type !== 'client_credentials') {
      return fail(400, 'unsupported_grant_type', 'only grant_type=client_credentials is supported');
    }
    if (form.client_assertion_type !== CLIENT_ASSERTION_TYPE) {
      return fail(400, 'invalid_request', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);
    }
    const assertion = form.client_assertion;
    if (!assertion) return fail(400, 'invalid_request', 'client_assertion is required');

    const verified = await this.#verifyAssertion(assertion, form.client_id, nowMs);
    if (!verified.ok) return verified;
    const { entry } = verified;

    const granted = grantScopes(form.scope, entry.allowed);
    if (granted.length === 0) {
      return fail(400, 'invalid_scope', 'none of the requested scopes is allowed for this client');
    }

    const accessToken = randomBytes(32).toString('base64url');
    this.#tokens.set(accessToken, {
      clientId: entry.client.clientId,
      scopes: granted,
      expiresAtMs: nowMs + this.#lifetimeSeconds * 1000,
    });
    return {
      ok: true,
      body: {
        access_token: accessToken,
        token_type: 'bearer',
        expires_in: this.#lifetimeSeconds,
        scope: granted.map((s) => s.text).join(' '),
      },
    };
  }

  /** Resolves an `Authorization` header to a live access token. */
  authenticate(authorization: string | undefined): BearerResult {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match?.[1]) return { ok: false, description: 'a bearer access token is required' };
    const token = this.#tokens.get(match[1]);
    if (!token) return { ok: false, description: 'the access token is not valid' };
    if (this.#now().getTime() >= token.expiresAtMs) {
      this.#tokens.delete(match[1]);
      return { ok: false, description: 'the access token has expired' };
    }
    return { ok: true, token };
  }

  async #verifyAssertion(
    assertion: string,
    formClientId: string | undefined,
    nowMs: number,
  ): Promise<{ readonly ok: true; readonly entry: ClientEntry } | Extract<TokenResult, { ok: false }>> {
    let alg: string | undefined;
    let iss: unknown;
    try {
      alg = decodeProtectedHeader(assertion).alg;
      iss = decodeJwt(assertion).iss;
    } catch {
      return fail(401, 'invalid_client', 'client_assertion is not a signed JWT');
    }
    if (!SUPPORTED_ALGS.includes(alg as (typeof SUPPORTED_ALGS)[number])) {
      return fail(401, 'invalid_client', 'client_assertion must be signed with RS384 or ES384');
    }
    if (typeof iss !== 'string' || iss === '')
      return fail(401, 'invalid_client', 'client_assertion has no iss');
    if (formClientId !== undefined && formClientId !== iss) {
      return fail(401, 'invalid_client', 'client_id does not match the assertion iss');
    }
    const entry = this.#clients.get(iss);
    if (!entry) return fail(401, 'invalid_client', 'unknown client');

    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(assertion, entry.keys, {
        algorithms: [...SUPPORTED_ALGS],
        issuer: iss,
        subject: iss,
        audience: this.#tokenUrl(),
        currentDate: new Date(nowMs),
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'],
      }));
    } catch (err) {
      return fail(401, 'invalid_client', describeJoseError(err));
    }
    const exp = payload.exp as number;
    if (exp * 1000 > nowMs + MAX_ASSERTION_LIFETIME_SECONDS * 1000 + EXP_ROUNDING_MS) {
      return fail(
        401,
        'invalid_client',
        `client_assertion exp is more than ${MAX_ASSERTION_LIFETIME_SECONDS} s ahead`,
      );
    }
    const jti = payload.jti;
    if (typeof jti !== 'string' || jti === '')
      return fail(401, 'invalid_client', 'client_assertion has no jti');
    const jtiKey = `${iss}\0${jti}`;
    const usedUntil = this.#usedJtis.get(jtiKey);
    if (usedUntil !== undefined && usedUntil > nowMs) {
      return fail(401, 'invalid_client', 'client_assertion jti has already been used');
    }
    this.#usedJtis.set(jtiKey, exp * 1000);
    return { ok: true, entry };
  }

  /** Forgets expired tokens and jtis, at most every ten seconds. */
  #sweep(nowMs: number): void {
    if (nowMs - this.#lastSweepMs < 10_000 && nowMs >= this.#lastSweepMs) return;
    this.#lastSweepMs = nowMs;
    for (const [key, until] of this.#usedJtis) if (until <= nowMs) this.#usedJtis.delete(key);
    for (const [key, token] of this.#tokens) if (token.expiresAtMs <= nowMs) this.#tokens.delete(key);
  }
}

function fail(
  status: 400 | 401,
  error: OAuthErrorCode,
  description: string,
): Extract<TokenResult, { ok: false }> {
  return { ok: false, status, error, description };
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'client_assertion has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    return `client_assertion claim "${err.claim}" is missing or wrong (${err.reason})`;
  }
  if (
    err instanceof joseErrors.JWSSignatureVerificationFailed ||
    err instanceof joseErrors.JWKSNoMatchingKey
  ) {
    return 'client_assertion signature does not verify with the registered keys';
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed)
    return 'client_assertion must be signed with RS384 or ES384';
  return 'client_assertion is not valid';
}
