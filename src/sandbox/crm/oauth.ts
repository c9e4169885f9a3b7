import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { toId18 } from './ids.ts';

/**
 * OAuth 2.0 client credentials, the way a Salesforce connected app answers them, and the sessions the
 * issued access tokens open. Sessions live in memory only: a restarted sandbox asks clients to log in
 * again, as an expired session would.
 */
export interface CrmClient {
  readonly clientId: string;
  readonly clientSecret: string;
}

export const DEMO_CRM_CLIENT: CrmClient = Object.freeze({
  clientId: 'sluice-demo',
  clientSecret: 'sluice-demo-secret',
});

export const ORG_ID = toId18('00D8d0000001SlC');
export const INTEGRATION_USER_ID = toId18('0058d0000001SlC');

export interface TokenResponse {
  readonly access_token: string;
  readonly instance_url: string;
  readonly id: string;
  readonly token_type: 'Bearer';
  readonly issued_at: string;
  readonly signature: string;
  readonly scope: string;
}

export type TokenOutcome =
  | { readonly ok: true; readonly body: TokenResponse }
  | { readonly ok: false; readonly body: { readonly error: string; readonly error_description: string } };

export interface TokenRequest {
  readonly grantType: string | undefined;
  readonly clientId: string | undefined;
  readonly clientSecret: string | undefined;
}

export type SessionCheck = { readonly ok: true; readonly clientId: string } | { readonly ok: false };

interface Session {
  readonly clientId: string;
  readonly expiresMs: number;
}

const sameSecret = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export class OAuthServer {
  readonly #clients: ReadonlyMap<string, CrmClient>;
  readonly #sessionMs: number;
  readonly #now: () => Date;
  readonly #sessions = new Map<string, Session>();

  constructor(clients: readonly CrmClient[], sessionSeconds: number, now: () => Date) {
    this.#clients = new Map(clients.map((c) => [c.clientId, c]));
    this.#sessionMs = sessionSeconds * 1000;
    this.#now = now;
  }

  /** Answers a token request; `instanceUrl` is the sandbox's own origin. */
  token(request: TokenRequest, instanceUrl: string): TokenOutcome {
    if (request.grantType !== 'client_credentials') {
      return {
        ok: false,
        body: { error: 'unsupported_grant_type', error_description: 'grant type not supported' },
      };
    }
    const client = request.clientId === undefined ? undefined : this.#clients.get(request.clientId);
    if (
      !client ||
      request.clientSecret === undefined ||
      !sameSecret(client.clientSecret, request.clientSecret)
    ) {
      return {
        ok: false,
        body: { error: 'invalid_client', error_description: 'invalid client credentials' },
      };
    }
    this.#prune();
    const issuedMs = this.#now().getTime();
    const accessToken = `${ORG_ID.slice(0, 15)}!${randomBytes(48).toString('base64url')}`;
    this.#sessions.set(accessToken, { clientId: client.clientId, expiresMs: issuedMs + this.#sessionMs });
    const id = `${instanceUrl}/id/${ORG_ID}/${INTEGRATION_USER_ID}`;
    const issuedAt = String(issuedMs);
    const signature = createHmac('sha256', client.clientSecret)
      .update(id + issuedAt)
      .digest('base64');
    return {
      ok: true,
      body: {
        access_token: accessToken,
        instance_url: instanceUrl,
        id,
        token_type: 'Bearer',
        issued_at: issuedAt,
        signature,
        scope: 'api',
      },
    };
  }

  /** Checks an `Authorization` header (`Bearer <token>`, or Salesforce's older `OAuth <token>`). */
  check(authorization: string | undefined): SessionCheck {
    const m = /^(?:Bearer|OAuth)\s+(\S+)\s*$/i.exec(authorization ?? '');
    const session = m ? this.#sessions.get(m[1] ?? '') : undefined;
    if (!session) return { ok: false };
    if (this.#now().getTime() >= session.expiresMs) {
      this.#sessions.delete(m?.[1] ?? '');
      return { ok: false };
    }
    return { ok: true, clientId: session.clientId };
  }

  #prune(): void {
    const now = this.#now().getTime();
    for (const [token, session] of this.#sessions) if (now >= session.expiresMs) this.#sessions.delete(token);
  }
}
