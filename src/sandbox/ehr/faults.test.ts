import type { OperationOutcome } from '@medplum/fhirtypes';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type EhrSandbox, startEhrSandbox } from './index.ts';
import { fhirFetch, getToken, requestToken, signClientAssertion, syntheaBundleFiles } from './testing.ts';

let sandbox: EhrSandbox;
let token: string;
let patientId: string;

beforeAll(async () => {
  sandbox = await startEhrSandbox({ seed: syntheaBundleFiles(1) });
  token = await getToken(sandbox);
  patientId = (await sandbox.repo.searchResources({ resourceType: 'Patient' }))[0]?.id as string;
});

afterEach(() => {
  sandbox.faults.clear();
});

afterAll(async () => {
  await sandbox?.close();
});

describe('injected faults on FHIR routes', () => {
  it.each([
    ['delta-seconds', '2'],
    ['HTTP-date', 'Wed, 21 Oct 2026 07:28:00 GMT'],
    ['malformed', 'soon'],
    ['negative', '-1'],
    ['fractional', '1.5'],
  ])('answers 429 with Retry-After sent verbatim (%s), then recovers', async (_kind, retryAfter) => {
    sandbox.faults.add({ fault: { kind: 'rate-limit', retryAfter }, path: '/fhir/Patient', times: 1 });
    const limited = await fhirFetch(sandbox, `Patient/${patientId}`, token);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe(retryAfter);
    const outcome = (await limited.json()) as OperationOutcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]?.code).toBe('throttled');

    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
  });

  it('answers an injected 503 with an OperationOutcome', async () => {
    sandbox.faults.add({ fault: { kind: 'status', status: 503 }, path: '/fhir/', times: 2 });
    for (let i = 0; i < 2; i++) {
      const response = await fhirFetch(sandbox, 'Patient?_count=1', token);
      expect(response.status).toBe(503);
      expect(((await response.json()) as OperationOutcome).issue[0]?.code).toBe('transient');
    }
    expect((await fhirFetch(sandbox, 'Patient?_count=1', token)).status).toBe(200);
  });

  it('drops the connection without an answer', async () => {
    sandbox.faults.add({ fault: { kind: 'drop' }, path: '/fhir/Patient', times: 1 });
    await expect(fhirFetch(sandbox, `Patient/${patientId}`, token)).rejects.toThrow();
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
    const logged = sandbox.requests.entries({ pathPrefix: `/fhir/Patient/${patientId}` });
    expect(logged.some((e) => e.fault === 'drop')).toBe(true);
  });

  it('adds latency', async () => {
    sandbox.faults.add({ fault: { kind: 'latency', ms: 150 }, path: '/fhir/Patient', times: 1 });
    const started = performance.now();
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('applies only to the method and path of the rule, and never to /__sandbox', async () => {
    sandbox.faults.add({ fault: { kind: 'status', status: 500 }, method: 'POST' });
    expect((await fhirFetch(sandbox, `Patient/${patientId}`, token)).status).toBe(200);
    expect((await fetch(`${new URL(sandbox.url).origin}/__sandbox/stats`)).status).toBe(200);
  });

  it('can be configured over HTTP', async () => {
    const origin = new URL(sandbox.url).origin;
    const added = await fetch(`${origin}/__sandbox/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fault: { kind: 'rate-limit', retryAfter: '7' }, path: '/fhir/', times: 1 }),
    });
    expect(added.status).toBe(201);
    const limited = await fhirFetch(sandbox, 'metadata', undefined);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect((await fhirFetch(sandbox, 'metadata', undefined)).status).toBe(200);
  });
});

describe('injected faults on the token endpoint', () => {
  it('answers 429 with Retry-After, then issues a token', async () => {
    sandbox.faults.add({ fault: { kind: 'rate-limit', retryAfter: '3' }, path: '/auth/token', times: 1 });
    const assertion = await signClientAssertion({ tokenUrl: sandbox.tokenUrl });
    const limited = await requestToken(sandbox.tokenUrl, assertion, 'system/*.read');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('3');
    // The throttled request did not consume the assertion's jti: the same assertion works on retry.
    const retried = await requestToken(sandbox.tokenUrl, assertion, 'system/*.read');
    expect(retried.status).toBe(200);
  });

  it('drops the connection of a token request', async () => {
    sandbox.faults.add({ fault: { kind: 'drop' }, path: '/auth/token', times: 1 });
    await expect(getToken(sandbox)).rejects.toThrow();
    await expect(getToken(sandbox)).resolves.toEqual(expect.any(String));
  });

  it('answers an injected 500', async () => {
    sandbox.faults.add({ fault: { kind: 'status', status: 500 }, path: '/auth/token', times: 1 });
    const assertion = await signClientAssertion({ tokenUrl: sandbox.tokenUrl });
    expect((await requestToken(sandbox.tokenUrl, assertion, 'system/*.read')).status).toBe(500);
  });
});
