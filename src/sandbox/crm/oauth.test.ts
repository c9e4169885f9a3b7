import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CrmSandbox, DEMO_CRM_CLIENT, startCrmSandbox } from './index.ts';
import { apiPath, crmFetch, crmLogin, crmToken, fakeClock } from './testing.ts';

const clock = fakeClock();
const OTHER = { clientId: 'second-app', clientSecret: 'another-secret' };
let sandbox: CrmSandbox;

beforeAll(async () => {
  sandbox = await startCrmSandbox({ now: clock.now, sessionSeconds: 600, clients: [DEMO_CRM_CLIENT, OTHER] });
});

afterAll(async () => {
  await sandbox?.close();
});

const INVALID_SESSION = [{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' }];

describe('OAuth client credentials', () => {
  it('issues a Salesforce-shaped token response for good credentials in a form body', async () => {
    const response = await crmLogin(sandbox);
    expect(response.status).toBe(200);
    const body = response.body;
    expect(body.token_type).toBe('Bearer');
    expect(body.instance_url).toBe(sandbox.url);
    expect(body.issued_at).toBe(String(clock.now().getTime()));
    expect(body.id).toMatch(new RegExp(`^${sandbox.url}/id/00D\\w{15}/005\\w{15}$`));
    expect(body.access_token).toMatch(/^00D\w{12}!/);
    // The signature is the HMAC-SHA256 of id + issued_at keyed by the client secret, as Salesforce signs it.
    const expected = createHmac('sha256', DEMO_CRM_CLIENT.clientSecret)
      .update(`${body.id}${body.issued_at}`)
      .digest('base64');
    expect(body.signature).toBe(expected);
  });

  it('accepts HTTP Basic client authentication', async () => {
    const basic = Buffer.from(`${OTHER.clientId}:${OTHER.clientSecret}`).toString('base64');
    const response = await fetch(`${sandbox.url}/services/oauth2/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}` },
      body: new URLSearchParams({ grant_type: 'client_credentials' }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { access_token: string };
    expect((await crmFetch(sandbox, body.access_token, 'GET', apiPath('/limits'))).status).toBe(200);
  });

  it.each([
    ['a wrong secret', { ...DEMO_CRM_CLIENT, clientSecret: 'wrong' }],
    ['an unknown client', { clientId: 'nobody', clientSecret: DEMO_CRM_CLIENT.clientSecret }],
    ['an empty secret', { ...DEMO_CRM_CLIENT, clientSecret: '' }],
    ["another client's secret", { clientId: DEMO_CRM_CLIENT.clientId, clientSecret: OTHER.clientSecret }],
  ])('refuses %s with 400 invalid_client', async (_case, client) => {
    const response = await crmLogin(sandbox, client);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({
      error: 'invalid_client',
      error_description: 'invalid client credentials',
    });
  });

  it('refuses another grant type', async () => {
    const response = await fetch(`${sandbox.url}/services/oauth2/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'password',
        client_id: 'sluice-demo',
        client_secret: 'sluice-demo-secret',
      }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'unsupported_grant_type' });
  });
});

describe('API sessions', () => {
  it('answers 401 INVALID_SESSION_ID without a bearer token, with a made-up one and with a Basic header', async () => {
    for (const authorization of [
      undefined,
      'Bearer 00Dnotatoken!abc',
      `Basic ${Buffer.from('a:b').toString('base64')}`,
    ]) {
      const response = await fetch(`${sandbox.url}${apiPath('/limits')}`, {
        headers: authorization ? { authorization } : {},
      });
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual(INVALID_SESSION);
    }
  });

  it('expires a session after sessionSeconds on the sandbox clock', async () => {
    const token = await crmToken(sandbox);
    clock.advance(599_000);
    expect((await crmFetch(sandbox, token, 'GET', apiPath('/limits'))).status).toBe(200);
    clock.advance(1_000);
    const expired = await crmFetch(sandbox, token, 'GET', apiPath('/limits'));
    expect(expired.status).toBe(401);
    expect(expired.body).toEqual(INVALID_SESSION);
    // A new login works again.
    expect((await crmFetch(sandbox, await crmToken(sandbox), 'GET', apiPath('/limits'))).status).toBe(200);
  });

  it('does not let an unauthenticated request touch records', async () => {
    const response = await crmFetch(
      sandbox,
      undefined,
      'PATCH',
      apiPath('/sobjects/Account/External_ID_vod__c/NOPE'),
      {
        Name: 'Should not exist',
      },
    );
    expect(response.status).toBe(401);
    expect(sandbox.records('Account')).toEqual([]);
  });
});
