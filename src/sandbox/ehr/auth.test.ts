import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EhrSandbox, startEhrSandbox } from './index.ts';
import {
  type ClientAlg,
  demoPrivateKey,
  type FakeClock,
  fakeClock,
  fhirFetch,
  generateClient,
  getToken,
  requestToken,
  signClientAssertion,
  syntheaBundleFiles,
} from './testing.ts';

let sandbox: EhrSandbox;
let clock: FakeClock;
let patientId: string;

beforeAll(async () => {
  clock = fakeClock();
  sandbox = await startEhrSandbox({ seed: syntheaBundleFiles(1), now: clock.now });
  const patients = await sandbox.repo.searchResources({ resourceType: 'Patient' });
  patientId = patients[0]?.id as string;
});

afterAll(async () => {
  await sandbox?.close();
});

async function tokenResponse(
  options: Partial<Parameters<typeof signClientAssertion>[0]> & { scope?: string } = {},
): Promise<{ status: number; body: Record<string, unknown>; assertion: string }> {
  const assertion = await signClientAssertion({ tokenUrl: sandbox.tokenUrl, now: clock.now(), ...options });
  const response = await requestToken(sandbox.tokenUrl, assertion, options.scope ?? 'system/*.read');
  return { status: response.status, body: (await response.json()) as Record<string, unknown>, assertion };
}

describe('token endpoint: the happy path', () => {
  it.each<ClientAlg>(['RS384', 'ES384'])('issues a bearer token for a %s-signed assertion', async (alg) => {
    const { status, body } = await tokenResponse({ alg, scope: 'system/*.read' });
    expect(status).toBe(200);
    expect(body.token_type).toBe('bearer');
    expect(body.expires_in).toBe(300);
    expect(body.scope).toBe('system/*.read');
    expect(typeof body.access_token).toBe('string');
    expect((body.access_token as string).length).toBeGreaterThanOrEqual(40);

    const read = await fhirFetch(sandbox, `Patient/${patientId}`, body.access_token as string);
    expect(read.status).toBe(200);
    expect(((await read.json()) as { id: string }).id).toBe(patientId);
  });

  it('answers with no-store caching headers', async () => {
    const assertion = await signClientAssertion({ tokenUrl: sandbox.tokenUrl, now: clock.now() });
    const response = await requestToken(sandbox.tokenUrl, assertion, 'system/Patient.rs');
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('narrows the scopes to what the client is allowed', async () => {
    expect((await tokenResponse({ scope: 'system/*.cruds' })).body.scope).toBe('system/*.rs');
    expect((await tokenResponse({ scope: 'system/Patient.read system/*.write' })).body.scope).toBe(
      'system/Patient.read',
    );
  });

  it('refuses a request for scopes the client may not have (invalid_scope)', async () => {
    const { status, body } = await tokenResponse({ scope: 'system/*.write' });
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_scope');
    expect((await tokenResponse({ scope: 'patient/*.read' })).body.error).toBe('invalid_scope');
  });

  it('clamps a longer configured token lifetime to 300 s', async () => {
    const other = await startEhrSandbox({ tokenLifetimeSeconds: 3600, now: clock.now });
    try {
      const assertion = await signClientAssertion({ tokenUrl: other.tokenUrl, now: clock.now() });
      const body = (await (await requestToken(other.tokenUrl, assertion, 'system/*.read')).json()) as {
        expires_in: number;
      };
      expect(body.expires_in).toBe(300);
    } finally {
      await other.close();
    }
  });
});

describe('token endpoint: refused assertions', () => {
  const refused = async (
    options: Parameters<typeof tokenResponse>[0],
    description: RegExp,
  ): Promise<Record<string, unknown>> => {
    const { status, body, assertion } = await tokenResponse(options);
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
    expect(body.error_description).toMatch(description);
    expect(JSON.stringify(body)).not.toContain(assertion);
    expect(body.access_token).toBeUndefined();
    return body;
  };

  it('refuses an expired assertion', async () => {
    await refused({ now: new Date(clock.now().getTime() - 600_000), expiresInSeconds: 240 }, /expired/);
  });

  it('refuses an assertion whose exp is more than five minutes ahead', async () => {
    await refused({ expiresInSeconds: 360 }, /more than 300 s ahead/);
    await refused({ expiresInSeconds: 3600 }, /more than 300 s ahead/);
  });

  it('accepts exp exactly five minutes ahead', async () => {
    expect((await tokenResponse({ expiresInSeconds: 300 })).status).toBe(200);
  });

  it('refuses a wrong audience', async () => {
    await refused({ aud: 'https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token' }, /"aud"/);
    await refused({ aud: sandbox.url }, /"aud"/);
  });

  it('refuses a replayed jti while the first assertion is unexpired', async () => {
    const jti = randomUUID();
    expect((await tokenResponse({ jti })).status).toBe(200);
    await refused({ jti }, /already been used/);
    // The very same signed assertion, replayed byte for byte.
    const assertion = await signClientAssertion({ tokenUrl: sandbox.tokenUrl, now: clock.now() });
    expect((await requestToken(sandbox.tokenUrl, assertion, 'system/*.read')).status).toBe(200);
    const replay = await requestToken(sandbox.tokenUrl, assertion, 'system/*.read');
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { error: string }).error).toBe('invalid_client');
  });

  it('refuses an unknown client', async () => {
    await refused({ clientId: 'not-registered' }, /unknown client/);
  });

  it('refuses an assertion signed with a key that is not registered', async () => {
    const { privateKey } = await generateKeyPair('RS384', { extractable: true });
    await refused({ alg: 'RS384', key: await exportJWK(privateKey) }, /signature/);
    const ec = await generateKeyPair('ES384', { extractable: true });
    await refused({ alg: 'ES384', key: await exportJWK(ec.privateKey) }, /signature/);
  });

  it('refuses iss different from sub', async () => {
    await refused({ sub: 'someone-else' }, /"sub"/);
  });

  it('refuses algorithms other than RS384 and ES384, including alg=none', async () => {
    const rs256 = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'rs384-2026-11-23' })
      .setIssuer('sluice-demo')
      .setSubject('sluice-demo')
      .setAudience(sandbox.tokenUrl)
      .setExpirationTime(Math.floor(clock.now().getTime() / 1000) + 120)
      .setJti(randomUUID())
      .sign(await importJWK(demoPrivateKey('RS384'), 'RS256'));
    const response = await requestToken(sandbox.tokenUrl, rs256, 'system/*.read');
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error_description: string }).error_description).toMatch(
      /RS384 or ES384/,
    );

    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const exp = Math.floor(clock.now().getTime() / 1000) + 120;
    const claims = { iss: 'sluice-demo', sub: 'sluice-demo', aud: sandbox.tokenUrl, exp, jti: randomUUID() };
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    const none = await requestToken(sandbox.tokenUrl, unsigned, 'system/*.read');
    expect(none.status).toBe(401);
  });

  it('refuses an assertion without jti', async () => {
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES384', kid: 'es384-2026-11-23' })
      .setIssuer('sluice-demo')
      .setSubject('sluice-demo')
      .setAudience(sandbox.tokenUrl)
      .setExpirationTime(Math.floor(clock.now().getTime() / 1000) + 120)
      .sign(await importJWK(demoPrivateKey('ES384'), 'ES384'));
    const response = await requestToken(sandbox.tokenUrl, assertion, 'system/*.read');
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error_description: string }).error_description).toMatch(/jti/);
  });

  it('refuses garbage and malformed requests with RFC 6749 errors', async () => {
    const garbage = await requestToken(sandbox.tokenUrl, 'not.a.jwt', 'system/*.read');
    expect(garbage.status).toBe(401);
    expect(((await garbage.json()) as { error: string }).error).toBe('invalid_client');

    const assertion = await signClientAssertion({ tokenUrl: sandbox.tokenUrl, now: clock.now() });
    const wrongGrant = await requestToken(sandbox.tokenUrl, assertion, 'system/*.read', {
      grant_type: 'authorization_code',
    });
    expect(wrongGrant.status).toBe(400);
    expect(((await wrongGrant.json()) as { error: string }).error).toBe('unsupported_grant_type');

    const wrongType = await requestToken(sandbox.tokenUrl, assertion, 'system/*.read', {
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer',
    });
    expect(wrongType.status).toBe(400);
    expect(((await wrongType.json()) as { error: string }).error).toBe('invalid_request');

    const asJson = await fetch(sandbox.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials', client_assertion: assertion }),
    });
    expect(asJson.status).toBe(400);
    expect(((await asJson.json()) as { error: string }).error).toBe('invalid_request');

    const noAssertion = await fetch(sandbox.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    expect(noAssertion.status).toBe(400);
  });
});

describe('bearer tokens on FHIR requests', () => {
  it('lets the public discovery documents through without a token', async () => {
    expect((await fhirFetch(sandbox, 'metadata', undefined)).status).toBe(200);
    expect((await fhirFetch(sandbox, '.well-known/smart-configuration', undefined)).status).toBe(200);
  });

  it('answers 401 with WWW-Authenticate and an OperationOutcome without a valid token', async () => {
    for (const token of [undefined, 'made-up-token', '']) {
      const response = await fhirFetch(sandbox, `Patient/${patientId}`, token);
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/);
      const body = (await response.json()) as { resourceType: string };
      expect(body.resourceType).toBe('OperationOutcome');
    }
    const basic = await fhirFetch(sandbox, 'Patient', undefined, {
      headers: { authorization: 'Basic Zm9vOmJhcg==' },
    });
    expect(basic.status).toBe(401);
  });

  it('expires tokens after their lifetime (fake clock)', async () => {
    const token = await getToken(sandbox, { now: clock.now() });
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
    clock.advance(299_000);
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
    clock.advance(1_000);
    const expired = await fhirFetch(sandbox, `Patient/${patientId}`, token);
    expect(expired.status).toBe(401);
    expect(expired.headers.get('www-authenticate')).toContain('expired');
  });
});

describe('scopes on FHIR requests', () => {
  it('refuses a Patient-only token on Practitioner (403), allows it on Patient', async () => {
    const token = await getToken(sandbox, { scope: 'system/Patient.read', now: clock.now() });
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
    expect((await fhirFetch(sandbox, 'Patient?_count=1', token)).status).toBe(200);

    const practitioner = (await sandbox.repo.searchResources({ resourceType: 'Practitioner' }))[0];
    const read = await fhirFetch(sandbox, `Practitioner/${practitioner?.id}`, token);
    expect(read.status).toBe(403);
    const outcome = (await read.json()) as {
      resourceType: string;
      issue: { code: string; details: { text: string } }[];
    };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]?.code).toBe('forbidden');
    expect(outcome.issue[0]?.details.text).toContain('system/Practitioner.read');
    expect((await fhirFetch(sandbox, 'Practitioner?_count=1', token)).status).toBe(403);
    expect((await fhirFetch(sandbox, `Observation?subject=Patient/${patientId}`, token)).status).toBe(403);
  });

  it('tells read from search with SMART v2 scopes', async () => {
    const token = await getToken(sandbox, { scope: 'system/Patient.r', now: clock.now() });
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
    expect((await fhirFetch(sandbox, `Patient/${patientId}/_history`, token)).status).toBe(200);
    expect((await fhirFetch(sandbox, `Patient/${patientId}/_history/1`, token)).status).toBe(200);
    expect((await fhirFetch(sandbox, 'Patient?_count=1', token)).status).toBe(403);

    const searchOnly = await getToken(sandbox, { scope: 'system/Patient.s', now: clock.now() });
    expect((await fhirFetch(sandbox, 'Patient?_count=1', searchOnly)).status).toBe(200);
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, searchOnly)).status).toBe(403);
  });

  it('refuses writes to a read-only token and leaves the data alone', async () => {
    const token = await getToken(sandbox, { scope: 'system/*.read', now: clock.now() });
    const before = await sandbox.repo.readResource('Patient', patientId);
    const put = await fhirFetch(sandbox, `Patient/${patientId}`, token, {
      method: 'PUT',
      body: JSON.stringify({ ...before, gender: 'other' }),
    });
    expect(put.status).toBe(403);
    const del = await fhirFetch(sandbox, `Patient/${patientId}`, token, { method: 'DELETE' });
    expect(del.status).toBe(403);
    const post = await fhirFetch(sandbox, 'Patient', token, {
      method: 'POST',
      body: JSON.stringify({ resourceType: 'Patient' }),
    });
    expect(post.status).toBe(403);
    const batch = await fhirFetch(sandbox, '', token, {
      method: 'POST',
      body: JSON.stringify({
        resourceType: 'Bundle',
        type: 'batch',
        entry: [{ request: { method: 'DELETE', url: `Patient/${patientId}` } }],
      }),
    });
    expect(batch.status).toBe(403);
    const after = await sandbox.repo.readResource('Patient', patientId);
    expect(after).toEqual(before);
  });

  it('lets a client registered with write scopes write', async () => {
    const writer = await generateClient('writer', 'system/Patient.cruds');
    const other = await startEhrSandbox({ clients: [writer.client], now: clock.now });
    try {
      const token = await getToken(other, {
        clientId: 'writer',
        alg: writer.alg,
        key: writer.privateKey,
        scope: 'system/Patient.cruds',
        now: clock.now(),
      });
      const created = await fhirFetch(other, 'Patient', token, {
        method: 'POST',
        body: JSON.stringify({ resourceType: 'Patient', gender: 'female' }),
      });
      expect(created.status).toBe(201);
      // The demo client is not registered there.
      await expect(getToken(other, { now: clock.now() })).rejects.toThrow(/invalid_client/);
    } finally {
      await other.close();
    }
  });
});
