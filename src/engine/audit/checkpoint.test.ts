import { CompactSign, importJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import {
  CHECKPOINT_TYP,
  type CheckpointBody,
  checkpointVerifier,
  createCheckpointSigner,
  generateCheckpointKey,
  parseJwks,
} from './checkpoint.ts';
import { testKeys } from './testing.ts';

const body: CheckpointBody = {
  log: 'log-1',
  treeSize: 12,
  rootHash: 'a'.repeat(64),
  chainHead: 'b'.repeat(64),
  at: '2025-03-01T10:00:00.000Z',
};

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return isSluiceError(err) ? err.code : 'not-a-sluice-error';
  }
  return undefined;
}

describe('signed checkpoints', () => {
  it('signs and verifies with Ed25519 and ES256', async () => {
    for (const alg of ['Ed25519', 'ES256'] as const) {
      const keys = await testKeys(`k-${alg}`, alg);
      const checkpoint = await keys.signer.sign(body);
      expect(checkpoint.keyId).toBe(`k-${alg}`);
      const checked = await checkpointVerifier(keys.jwks)(checkpoint.jws);
      expect(checked).toEqual({ ok: true, checkpoint });
    }
  });

  it('accepts checkpoints of every key in the JWKS (rotation) and refuses an unknown kid', async () => {
    const [old, current, stranger] = await Promise.all([
      testKeys('2024'),
      testKeys('2025', 'ES256'),
      testKeys('x'),
    ]);
    const verify = checkpointVerifier({ keys: [...old.jwks.keys, ...current.jwks.keys] });
    expect((await verify((await old.signer.sign(body)).jws)).ok).toBe(true);
    expect((await verify((await current.signer.sign(body)).jws)).ok).toBe(true);
    const foreign = await verify((await stranger.signer.sign(body)).jws);
    expect(foreign).toEqual({ ok: false, message: 'no key of the JWKS matches the checkpoint kid and alg' });
  });

  it('refuses a checkpoint signed by another key under a known kid, or with an altered payload', async () => {
    const keys = await testKeys('same-kid');
    const impostor = await testKeys('same-kid');
    const verify = checkpointVerifier(keys.jwks);
    expect((await verify((await impostor.signer.sign(body)).jws)).ok).toBe(false);
    const [header, , signature] = (await keys.signer.sign(body)).jws.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...body, treeSize: 13 })).toString('base64url');
    expect(await verify(`${header}.${forgedPayload}.${signature}`)).toEqual({
      ok: false,
      message: 'the checkpoint signature does not verify',
    });
  });

  it('refuses a token of another type signed with the same key, and a malformed payload', async () => {
    const keys = await testKeys('k');
    const key = await importJWK(keys.privateJwk, 'Ed25519');
    const sign = (payload: unknown, typ: string) =>
      new CompactSign(Buffer.from(JSON.stringify(payload)))
        .setProtectedHeader({ alg: 'Ed25519', kid: 'k', typ })
        .sign(key);
    const verify = checkpointVerifier(keys.jwks);
    expect((await verify(await sign(body, 'JWT'))).ok).toBe(false);
    expect(await verify(await sign({ ...body, treeSize: 0 }, CHECKPOINT_TYP))).toEqual({
      ok: false,
      message: 'the checkpoint payload is malformed',
    });
    expect(await verify(await sign({ ...body, extra: 1 }, CHECKPOINT_TYP))).toMatchObject({ ok: false });
    expect(await verify('not.a.jws')).toMatchObject({ ok: false });
  });

  it('refuses symmetric and unsigned tokens even when they name a known kid', async () => {
    const keys = await testKeys('k');
    const header = (h: object) => Buffer.from(JSON.stringify(h)).toString('base64url');
    const payload = Buffer.from(JSON.stringify(body)).toString('base64url');
    const verify = checkpointVerifier(keys.jwks);
    expect((await verify(`${header({ alg: 'none', kid: 'k', typ: CHECKPOINT_TYP })}.${payload}.`)).ok).toBe(
      false,
    );
    const hs = await new CompactSign(Buffer.from(JSON.stringify(body)))
      .setProtectedHeader({ alg: 'HS256', kid: 'k', typ: CHECKPOINT_TYP })
      .sign(new Uint8Array(32));
    expect((await verify(hs)).ok).toBe(false);
  });

  it('refuses unusable signing keys with CFG_KEY_INVALID, without echoing key material', async () => {
    const { privateJwk, publicJwk } = await generateCheckpointKey('k');
    const rsa = { kty: 'RSA', kid: 'r', d: 'x', n: 'y', e: 'AQAB' };
    const cases = [
      createCheckpointSigner(publicJwk),
      createCheckpointSigner({ ...privateJwk, kid: undefined }),
      createCheckpointSigner({ ...privateJwk, kid: 'has space' }),
      createCheckpointSigner({ ...privateJwk, alg: 'ES256' }),
      createCheckpointSigner(rsa),
      createCheckpointSigner({ ...privateJwk, d: 'AAAA' }),
      createCheckpointSigner('not a key'),
    ];
    for (const attempt of cases) expect(await codeOf(attempt)).toBe('CFG_KEY_INVALID');
    try {
      await createCheckpointSigner({ ...privateJwk, alg: 'ES256' });
    } catch (err) {
      expect(JSON.stringify(err)).not.toContain(privateJwk.d as string);
    }
  });

  it('refuses a verification JWKS that holds a private key or keys without kid', async () => {
    const { privateJwk, publicJwk } = await generateCheckpointKey('k');
    expect(() => parseJwks({ keys: [privateJwk] })).toThrow(/private key material/);
    expect(() => parseJwks({ keys: [{ ...publicJwk, kid: undefined }] })).toThrow(/kid/);
    expect(() => parseJwks({ keys: [] })).toThrow(/keys/);
    expect(() => parseJwks(null)).toThrow(/keys/);
    expect(parseJwks({ keys: [publicJwk] }).keys).toHaveLength(1);
  });
});
