import { CompactSign, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors/index.ts';
import type { Outcome } from '../mapping/outcome.ts';
import { canonicalHash, canonicalJson } from './canonical-json.ts';
import {
  type BatchEnvelope,
  buildEnvelope,
  ENVELOPE_TYP,
  type EnvelopeAlg,
  signEnvelope,
  type VerifiedEnvelope,
  verifyEnvelope,
} from './envelope.ts';
import { batchIdFor } from './group.ts';

interface KeyPair {
  readonly kid: string;
  readonly privateKey: JWK;
  readonly publicKey: JWK;
}

async function keyPair(kid: string, alg: EnvelopeAlg): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    extractable: true,
    crv: alg === 'EdDSA' ? 'Ed25519' : undefined,
  });
  return {
    kid,
    privateKey: { ...(await exportJWK(privateKey)), kid },
    publicKey: { ...(await exportJWK(publicKey)), kid, use: 'sig', alg },
  };
}

const payload = [
  { resourceType: 'Practitioner', id: 'pr-1', name: [{ family: 'Example' }] },
  { resourceType: 'PractitionerRole', id: 'role-1', practitioner: { reference: 'Practitioner/pr-1' } },
  { resourceType: 'Practitioner', id: 'pr-2', active: true },
];

function envelope(items: readonly unknown[] = payload): BatchEnvelope {
  return buildEnvelope(
    {
      batchId: batchIdFor(
        {
          purpose: 'HMARKT',
          consentScope: 'hcp-multichannel',
          policyVersion: 'p1',
          recipientRole: 'manufacturer',
          geography: 'US-MA',
        },
        0,
        'run-1',
      ),
      sourceSystem: 'epic',
      targetSystem: 'veeva',
      purpose: 'HMARKT',
      consentPolicyVersion: 'p1',
      createdAt: new Date('2024-06-01T12:00:00Z'),
      items: items.map((_, i) => ({
        sourceId: `src-${i}`,
        canonicalId: `canon-${i}`,
        transformationVersion: 'map-v3',
        validationStatus: i === 1 ? ('warning' as const) : ('valid' as const),
      })),
    },
    items,
  );
}

function failed(outcome: Outcome<VerifiedEnvelope>): string {
  return outcome.ok ? 'ok' : outcome.code;
}

/** Flips one character of one JWS segment (keeping it base64url). */
function flip(jws: string, segment: 0 | 1 | 2, at = 10): string {
  const parts = jws.split('.');
  const s = parts[segment] as string;
  const c = s[at] === 'A' ? 'B' : 'A';
  parts[segment] = s.slice(0, at) + c + s.slice(at + 1);
  return parts.join('.');
}

let es1: KeyPair;
let es2: KeyPair;
let ed: KeyPair;
beforeAll(async () => {
  [es1, es2, ed] = await Promise.all([
    keyPair('k-2024', 'ES256'),
    keyPair('k-2025', 'ES256'),
    keyPair('k-ed', 'EdDSA'),
  ]);
});

describe('buildEnvelope', () => {
  it('counts, lists resource types and hashes the canonical payload', () => {
    const env = envelope();
    expect(env).toMatchObject({
      recordCount: 3,
      resourceTypes: ['Practitioner', 'PractitionerRole'],
      createdAt: '2024-06-01T12:00:00.000Z',
      payloadHash: canonicalHash(payload),
    });
    // Key order inside items does not change the hash.
    const reordered = payload.map((p) => Object.fromEntries(Object.entries(p).reverse()));
    expect(envelope(reordered).payloadHash).toBe(env.payloadHash);
  });

  it('refuses a manifest that does not match the payload', () => {
    expect(() =>
      buildEnvelope({ ...envelope(), createdAt: '2024-06-01T12:00:00Z' }, payload.slice(1)),
    ).toThrow(/lists 3 items but the payload has 2/);
  });
});

describe('signEnvelope / verifyEnvelope', () => {
  it('round-trips with ES256 and EdDSA, naming the kid in the protected header', async () => {
    for (const [key, alg] of [
      [es1, 'ES256'],
      [ed, 'EdDSA'],
    ] as const) {
      const jws = await signEnvelope(envelope(), key, alg);
      const header = JSON.parse(Buffer.from(jws.split('.')[0] as string, 'base64url').toString());
      expect(header).toEqual({ alg, kid: key.kid, typ: ENVELOPE_TYP });
      // The signed payload is the canonical JSON of the envelope.
      expect(Buffer.from(jws.split('.')[1] as string, 'base64url').toString()).toBe(
        canonicalJson(envelope()),
      );
      const outcome = await verifyEnvelope(jws, { keys: [es1.publicKey, ed.publicKey] }, payload);
      expect(outcome.ok && outcome.value).toEqual({ envelope: envelope(), kid: key.kid, alg });
    }
  });

  it('rejects a tampered envelope (one byte in the payload or the signature)', async () => {
    const jws = await signEnvelope(envelope(), es1, 'ES256');
    const jwks = { keys: [es1.publicKey] };
    expect(failed(await verifyEnvelope(flip(jws, 1, 30), jwks, payload))).toBe('BATCH_SIGNATURE_INVALID');
    expect(failed(await verifyEnvelope(flip(jws, 2, 5), jwks, payload))).toBe('BATCH_SIGNATURE_INVALID');
    // Changing a byte of the envelope JSON and re-encoding it (a forged recordCount) fails too.
    const [h, p, s] = jws.split('.') as [string, string, string];
    const forged = Buffer.from(
      Buffer.from(p, 'base64url').toString().replace('"recordCount":3', '"recordCount":2'),
    );
    expect(
      failed(await verifyEnvelope(`${h}.${forged.toString('base64url')}.${s}`, jwks, payload.slice(0, 2))),
    ).toBe('BATCH_SIGNATURE_INVALID');
  });

  it('rejects a signature by the wrong key, and a kid it does not know', async () => {
    const jws = await signEnvelope(envelope(), es1, 'ES256');
    const impostor = { ...es2.publicKey, kid: es1.kid };
    expect(failed(await verifyEnvelope(jws, { keys: [impostor] }, payload))).toBe('BATCH_SIGNATURE_INVALID');
    expect(failed(await verifyEnvelope(jws, { keys: [es2.publicKey] }, payload))).toBe(
      'BATCH_SIGNING_KEY_UNKNOWN',
    );
    expect(failed(await verifyEnvelope(jws, { keys: [] }, payload))).toBe('BATCH_SIGNING_KEY_UNKNOWN');
    // A trusted key pinned to another algorithm or to encryption is not used.
    expect(failed(await verifyEnvelope(jws, { keys: [{ ...es1.publicKey, alg: 'ES384' }] }, payload))).toBe(
      'BATCH_SIGNING_KEY_UNKNOWN',
    );
    expect(failed(await verifyEnvelope(jws, { keys: [{ ...es1.publicKey, use: 'enc' }] }, payload))).toBe(
      'BATCH_SIGNING_KEY_UNKNOWN',
    );
  });

  it('supports key rotation: retired keys verify older batches while they stay in the set', async () => {
    const old = await signEnvelope(envelope(), es1, 'ES256');
    const current = await signEnvelope(envelope(), es2, 'ES256');
    const duringRotation = { keys: [es2.publicKey, es1.publicKey] };
    expect(failed(await verifyEnvelope(old, duringRotation, payload))).toBe('ok');
    expect(failed(await verifyEnvelope(current, duringRotation, payload))).toBe('ok');
    const afterRetirement = { keys: [es2.publicKey] };
    expect(failed(await verifyEnvelope(old, afterRetirement, payload))).toBe('BATCH_SIGNING_KEY_UNKNOWN');
    expect(failed(await verifyEnvelope(current, afterRetirement, payload))).toBe('ok');
    // A JWKS that wrongly holds the private key still verifies only as public.
    expect(failed(await verifyEnvelope(current, { keys: [es2.privateKey] }, payload))).toBe('ok');
  });

  it('rejects items that do not match the signed hash or count', async () => {
    const jws = await signEnvelope(envelope(), es1, 'ES256');
    const jwks = { keys: [es1.publicKey] };
    const changed = structuredClone(payload);
    (changed[2] as { active: boolean }).active = false;
    expect(failed(await verifyEnvelope(jws, jwks, changed))).toBe('BATCH_PAYLOAD_HASH_MISMATCH');
    expect(failed(await verifyEnvelope(jws, jwks, [payload[1], payload[0], payload[2]]))).toBe(
      'BATCH_PAYLOAD_HASH_MISMATCH',
    );
    expect(failed(await verifyEnvelope(jws, jwks, payload.slice(0, 2)))).toBe('BATCH_COUNT_MISMATCH');
    expect(failed(await verifyEnvelope(jws, jwks, [...payload, payload[0]]))).toBe('BATCH_COUNT_MISMATCH');
  });

  it('rejects other token types, unsafe algorithms and non-envelope payloads', async () => {
    const jwks = { keys: [es1.publicKey] };
    const signer = await import('jose').then((j) => j.importJWK(es1.privateKey, 'ES256'));
    // A JWT from the same key is not a batch envelope.
    const jwt = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'ES256', kid: es1.kid })
      .sign(signer);
    expect(failed(await verifyEnvelope(jwt, jwks, payload))).toBe('BATCH_ENVELOPE_MALFORMED');
    // alg "none".
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', kid: es1.kid, typ: ENVELOPE_TYP })).toString('base64url')}.${Buffer.from(canonicalJson(envelope())).toString('base64url')}.`;
    expect(failed(await verifyEnvelope(none, jwks, payload))).toBe('BATCH_SIGNATURE_INVALID');
    // A correctly signed payload that is not an envelope (unknown member).
    const odd = await new CompactSign(new TextEncoder().encode(canonicalJson({ ...envelope(), extra: 1 })))
      .setProtectedHeader({ alg: 'ES256', kid: es1.kid, typ: ENVELOPE_TYP })
      .sign(signer);
    expect(failed(await verifyEnvelope(odd, jwks, payload))).toBe('BATCH_ENVELOPE_MALFORMED');
    for (const junk of ['', 'a.b', 'not-a-jws', '...']) {
      expect(failed(await verifyEnvelope(junk, jwks, payload)), junk).toBe('BATCH_ENVELOPE_MALFORMED');
    }
  });

  it('refuses to sign with an unusable key or an inconsistent envelope', async () => {
    const code = async (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (err: unknown) => (isSluiceError(err) ? err.code : 'other'),
      );
    expect(await code(signEnvelope(envelope(), { kid: es1.kid, privateKey: es1.publicKey }, 'ES256'))).toBe(
      'CFG_KEY_INVALID',
    );
    expect(await code(signEnvelope(envelope(), es1, 'EdDSA'))).toBe('CFG_KEY_INVALID');
    expect(await code(signEnvelope(envelope(), { kid: 'other', privateKey: es1.privateKey }, 'ES256'))).toBe(
      'CFG_KEY_INVALID',
    );
    expect(await code(signEnvelope(envelope(), es1, 'HS256' as EnvelopeAlg))).toBe('CFG_KEY_INVALID');
    expect(await code(signEnvelope({ ...envelope(), recordCount: 2 }, es1, 'ES256'))).toBe(
      'BATCH_COUNT_MISMATCH',
    );
  });

  it('signs the same envelope for a retried batch (same id, same hash)', async () => {
    const a = envelope();
    const b = envelope(structuredClone(payload));
    expect(canonicalJson(b)).toBe(canonicalJson(a));
    // Ed25519 signatures are deterministic: the resent batch is byte-identical.
    expect(await signEnvelope(b, ed, 'EdDSA')).toBe(await signEnvelope(a, ed, 'EdDSA'));
  });
});
