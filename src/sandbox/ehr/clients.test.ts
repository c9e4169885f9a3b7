import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import { DEMO_CLIENT_ID, demoClient, loadClientsFile, startEhrSandbox } from './index.ts';
import { fhirFetch, generateClient, getToken } from './testing.ts';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-ehr-clients-test-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function loadError(content: unknown): Promise<Error & { code?: string }> {
  const file = join(dir, `clients-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
  const error = await loadClientsFile(file).then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!isSluiceError(error)) throw new Error('expected a SluiceError');
  return error;
}

describe('demoClient', () => {
  it('is the sluice-demo client with both demo keys and read-only scopes', () => {
    const client = demoClient();
    expect(client.clientId).toBe(DEMO_CLIENT_ID);
    expect(client.scope).toBe('system/*.read system/*.rs');
    expect(client.jwks.keys.map((k) => k.kid).sort()).toEqual(['es384-2026-11-23', 'rs384-2026-11-23']);
    expect(client.jwks.keys.every((k) => k.d === undefined)).toBe(true);
  });
});

describe('loadClientsFile', () => {
  it('loads inline JWKS and jwksFile (relative to the clients file), and the sandbox accepts them', async () => {
    const a = await generateClient('client-a', 'system/Patient.rs', 'ES384');
    const b = await generateClient('client-b', 'system/*.read', 'RS384');
    await writeFile(join(dir, 'b.jwks.json'), JSON.stringify(b.client.jwks));
    const file = join(dir, 'clients.json');
    await writeFile(
      file,
      JSON.stringify([
        { clientId: 'client-a', jwks: a.client.jwks, scope: 'system/Patient.rs' },
        { clientId: 'client-b', jwksFile: 'b.jwks.json', scope: 'system/*.read' },
      ]),
    );
    const clients = await loadClientsFile(file);
    expect(clients.map((c) => c.clientId)).toEqual(['client-a', 'client-b']);

    const sandbox = await startEhrSandbox({ clients });
    try {
      const tokenA = await getToken(sandbox, {
        clientId: 'client-a',
        alg: 'ES384',
        key: a.privateKey,
        scope: 'system/*.read',
      });
      expect((await fhirFetch(sandbox, 'Patient?_count=1', tokenA)).status).toBe(200);
      expect((await fhirFetch(sandbox, 'Practitioner?_count=1', tokenA)).status).toBe(403);
      const tokenB = await getToken(sandbox, { clientId: 'client-b', alg: 'RS384', key: b.privateKey });
      expect((await fhirFetch(sandbox, 'Practitioner?_count=1', tokenB)).status).toBe(200);
    } finally {
      await sandbox.close();
    }
  });

  it('lists every bad key at once, by path', async () => {
    const good = demoClient().jwks;
    const error = await loadError([
      { clientId: '', jwks: good, scope: 'system/*.read' },
      { clientId: 'x', jwks: good, jwksFile: 'x.json', scope: 'system/*.read' },
      { clientId: 'y', scope: 'system/*.read' },
      {
        clientId: 'z',
        jwks: { keys: [{ kty: 'RSA', n: 'abc', e: 'AQAB', d: 'secret' }] },
        scope: 'patient/*.read',
      },
      { clientId: 'w', jwks: good, scope: 'system/*.read', extra: true },
    ]);
    expect(error.code).toBe('CFG_KEY_INVALID');
    expect(error.message).toContain('[0].clientId');
    expect(error.message).toContain('[1].jwks: give exactly one of');
    expect(error.message).toContain('[2].jwks: give exactly one of');
    expect(error.message).toContain('[3].jwks.keys[0]: must be a public key');
    expect(error.message).toContain('[3].scope: not system/ scopes: patient/*.read');
    expect(error.message).toContain('[4]');
    expect(error.message).not.toContain('secret');
  });

  it('reports a missing jwksFile, unusable keys and duplicate ids', async () => {
    const error = await loadError([
      { clientId: 'a', jwksFile: 'nope.jwks.json', scope: 'system/*.read' },
      {
        clientId: 'b',
        jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA', alg: 'ES384' }] },
        scope: 'system/*.read',
      },
      { clientId: 'c', jwks: demoClient().jwks, scope: 'system/*.read' },
      { clientId: 'c', jwks: demoClient().jwks, scope: 'system/*.read' },
    ]);
    expect(error.message).toContain('[0].jwksFile:');
    expect(error.message).toContain('does not exist');
    expect(error.message).toContain('[1].jwks.keys[0]: not a usable ES384 public key');
    expect(error.message).toContain('[3].clientId: duplicate client id "c"');
  });

  it('refuses a file that is not JSON, and a missing file', async () => {
    expect((await loadError('[{')).code).toBe('CFG_KEY_INVALID');
    expect((await loadError({ clientId: 'not-an-array' })).code).toBe('CFG_KEY_INVALID');
    await expect(loadClientsFile(join(dir, 'missing.json'))).rejects.toMatchObject({
      code: 'CFG_FILE_MISSING',
    });
  });

  it('makes startEhrSandbox refuse invalid programmatic clients', async () => {
    await expect(
      startEhrSandbox({ clients: [{ clientId: 'q', jwks: { keys: [] }, scope: 'system/*.read' }] }),
    ).rejects.toMatchObject({ code: 'CFG_KEY_INVALID' });
  });
});
