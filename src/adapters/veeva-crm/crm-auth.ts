import { SluiceError } from '../../core/errors/index.ts';
import { HttpStatusError } from '../http/http-error.ts';
import { requestJson } from '../http/request.ts';

export interface CrmAuthConfig {
  /** The login or My Domain URL that serves `/services/oauth2/token`. */
  readonly loginUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
}

export interface CrmSession {
  readonly accessToken: string;
  /** The instance that serves the REST API for this session. */
  readonly instanceUrl: string;
}

/**
 * OAuth 2.0 client-credentials login to Salesforce (the flow an integration user of a Veeva CRM org
 * uses). The session is kept until the API answers 401, then renewed once.
 */
export class CrmAuth {
  readonly #config: CrmAuthConfig;
  #session: CrmSession | undefined;
  #pending: Promise<CrmSession> | undefined;

  constructor(config: CrmAuthConfig) {
    this.#config = config;
  }

  async session(signal?: AbortSignal): Promise<CrmSession> {
    if (this.#session) return this.#session;
    this.#pending ??= this.#login(signal).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  invalidate(): void {
    this.#session = undefined;
  }

  async #login(signal?: AbortSignal): Promise<CrmSession> {
    const url = `${this.#config.loginUrl.replace(/\/$/, '')}/services/oauth2/token`;
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: this.#config.clientId,
      client_secret: this.#config.clientSecret,
    });
    let body: { access_token?: unknown; instance_url?: unknown };
    try {
      const response = await requestJson(
        url,
        { method: 'POST', body: form, ...(signal ? { signal } : {}) },
        'CRM token endpoint',
      );
      body = (response.body ?? {}) as typeof body;
    } catch (err) {
      if (err instanceof HttpStatusError && !err.transient) {
        throw new SluiceError(
          'TGT_AUTH_FAILED',
          `The CRM refused the login of client ${this.#config.clientId}: HTTP ${err.status}${err.codes.length ? ` (${err.codes.join(', ')})` : ''}.`,
          {
            cause: err,
            details: { status: err.status },
          },
        );
      }
      throw err;
    }
    if (typeof body.access_token !== 'string') {
      throw new SluiceError('TGT_BAD_RESPONSE', 'The CRM token response has no access_token.');
    }
    const instanceUrl = typeof body.instance_url === 'string' ? body.instance_url : this.#config.loginUrl;
    this.#session = { accessToken: body.access_token, instanceUrl: instanceUrl.replace(/\/$/, '') };
    return this.#session;
  }
}
