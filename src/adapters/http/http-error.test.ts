import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpStatusError, isTransient, NetworkError } from './http-error.ts';
import { requestJson } from './request.ts';

describe('isTransient', () => {
  it('is true for network errors and transient status errors only', () => {
    expect(isTransient(new NetworkError('reset'))).toBe(true);
    expect(isTransient(new HttpStatusError({ status: 503, transient: true, what: 'EHR' }))).toBe(true);
    expect(isTransient(new HttpStatusError({ status: 400, transient: false, what: 'EHR' }))).toBe(false);
  });

  it('is false for anything else, even when it claims to be transient', () => {
    expect(isTransient(new Error('x'))).toBe(false);
    expect(isTransient({ transient: true })).toBe(false);
    expect(isTransient(Object.assign(new Error('x'), { transient: true }))).toBe(false);
    expect(isTransient(undefined)).toBe(false);
    expect(isTransient('timeout')).toBe(false);
  });

  it('HttpStatusError names the system, status and codes only', () => {
    const err = new HttpStatusError({ status: 429, transient: true, codes: ['throttled'], what: 'CRM' });
    expect(err.message).toBe('CRM answered HTTP 429 (throttled)');
    expect(err.name).toBe('HttpStatusError');
    expect(new HttpStatusError({ status: 500, transient: true, what: 'EHR' }).message).toBe(
      'EHR answered HTTP 500',
    );
  });
});

/** The status classification happens where answers are read: a real HTTP server drives it. */
describe('requestJson → HttpStatusError / NetworkError', () => {
  let server: Server;
  let base = '';

  beforeAll(async () => {
    server = createServer((req, res) => {
      const status = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('status') ?? 200);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (req.url?.includes('retry='))
        headers['retry-after'] = new URL(req.url, 'http://x').searchParams.get('retry') ?? '';
      res.writeHead(status, headers);
      const body =
        status >= 400
          ? { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'throttled' }] }
          : { ok: true };
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function failure(query: string): Promise<unknown> {
    try {
      await requestJson(`${base}/x?${query}`, {}, 'EHR');
    } catch (err) {
      return err;
    }
    throw new Error(`expected ${query} to fail`);
  }

  it('returns 2xx bodies', async () => {
    await expect(requestJson(`${base}/x?status=200`, {}, 'EHR')).resolves.toMatchObject({
      status: 200,
      body: { ok: true },
    });
  });

  it('marks 429 and 5xx transient, with Retry-After parsed', async () => {
    for (const status of [429, 500, 502, 503, 504]) {
      const err = await failure(`status=${status}&retry=2`);
      expect(err).toBeInstanceOf(HttpStatusError);
      expect((err as HttpStatusError).status).toBe(status);
      expect(isTransient(err)).toBe(true);
      expect((err as HttpStatusError).retryAfterMs).toBe(2000);
      expect((err as HttpStatusError).codes).toEqual(['throttled']);
    }
  });

  it('leaves retryAfterMs undefined for an unusable Retry-After', async () => {
    const err = (await failure('status=503&retry=soon')) as HttpStatusError;
    expect(err.retryAfterMs).toBeUndefined();
    expect(isTransient(err)).toBe(true);
  });

  it('marks 4xx other than 429 permanent', async () => {
    for (const status of [400, 401, 403, 404, 409, 422]) {
      const err = await failure(`status=${status}`);
      expect(err).toBeInstanceOf(HttpStatusError);
      expect(isTransient(err), String(status)).toBe(false);
    }
  });

  it('turns a refused connection into a transient NetworkError', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await requestJson(`http://127.0.0.1:${port}/`, {}, 'CRM').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkError);
    expect(isTransient(err)).toBe(true);
    expect((err as Error).message).toContain('CRM request failed');
  });
});
