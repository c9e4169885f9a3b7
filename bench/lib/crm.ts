/**
 * Just enough of a Salesforce REST client to check what arrived in the CRM sandbox: record counts per
 * object (a query's `totalSize`) and one record by external id. Uses the sandbox's demo client.
 */
const API = 'v62.0';

export class CrmProbe {
  readonly #loginUrl: string;
  #session: { token: string; instanceUrl: string } | undefined;

  constructor(loginUrl: string) {
    this.#loginUrl = loginUrl.replace(/\/$/, '');
  }

  async #auth(): Promise<{ token: string; instanceUrl: string }> {
    if (this.#session) return this.#session;
    const response = await fetch(`${this.#loginUrl}/services/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: 'sluice-demo',
        client_secret: 'sluice-demo-secret',
      }),
    });
    if (!response.ok) throw new Error(`CRM sandbox token request failed: HTTP ${response.status}`);
    const body = (await response.json()) as { access_token: string; instance_url: string };
    this.#session = { token: body.access_token, instanceUrl: body.instance_url.replace(/\/$/, '') };
    return this.#session;
  }

  async #get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const { token, instanceUrl } = await this.#auth();
    return fetch(`${instanceUrl}/services/data/${API}/${path}`, {
      headers: { authorization: `Bearer ${token}`, ...headers },
    });
  }

  /** Live records of an object. */
  async count(object: string): Promise<number> {
    const response = await this.#get(`query?q=${encodeURIComponent(`SELECT Id FROM ${object}`)}`, {
      'sforce-query-options': 'batchSize=200',
    });
    if (!response.ok) throw new Error(`CRM sandbox query on ${object} failed: HTTP ${response.status}`);
    return ((await response.json()) as { totalSize: number }).totalSize;
  }

  /** One field of the record with this external id, or undefined when there is none (yet). */
  async field(object: string, externalIdField: string, externalId: string, field: string): Promise<unknown> {
    const response = await this.#get(
      `sobjects/${object}/${externalIdField}/${encodeURIComponent(externalId)}?fields=${field}`,
    );
    if (response.status === 404) return undefined;
    if (!response.ok) throw new Error(`CRM sandbox read of ${object} failed: HTTP ${response.status}`);
    return ((await response.json()) as Record<string, unknown>)[field];
  }
}
