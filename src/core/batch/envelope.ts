/**
 * Signed batch envelopes: a manifest of one batch (who sends, to whom, under which purpose and consent
 * policy, which records) signed as a compact JWS, plus a SHA-256 of the canonical JSON of the delivered
 * items. The receiver checks, in this order: the JWS type, the algorithm, that the key id is trusted, the
 * signature, the envelope shape, the counts, then the payload hash — so nothing unauthenticated is parsed
 * as an envelope and every failure has its own code.
 *
 * Key rotation: the trusted set is a JWKS; the signer names its key in the protected header (`kid`). Keep a
 * retired public key in the set for as long as batches signed with it may still arrive.
 */
import { CompactSign, compactVerify, decodeProtectedHeader, importJWK, type JWK } from 'jose';
import { z } from 'zod';
import { type ErrorCode, SluiceError } from '../errors/index.ts';
import { fail, issue, type Outcome, ok } from '../mapping/outcome.ts';
import { canonicalHash, canonicalJson } from './canonical-json.ts';

export const ENVELOPE_TYP = 'sluice-batch+jws';
export const ENVELOPE_ALGORITHMS = ['ES256', 'EdDSA'] as const;
export type EnvelopeAlg = (typeof ENVELOPE_ALGORITHMS)[number];

export interface EnvelopeItem {
  readonly sourceId: string;
  readonly canonicalId: string;
  readonly transformationVersion: string;
  /** Only validated records are batched; `warning` means valid with warnings. */
  readonly validationStatus: 'valid' | 'warning';
}

export interface BatchEnvelope {
  readonly batchId: string;
  readonly sourceSystem: string;
  readonly targetSystem: string;
  readonly purpose: string;
  readonly consentPolicyVersion: string;
  /** ISO 8601 instant. */
  readonly createdAt: string;
  readonly recordCount: number;
  readonly resourceTypes: readonly string[];
  /** SHA-256, base64url, of the canonical JSON of the delivered items (in order). */
  readonly payloadHash: string;
  readonly items: readonly EnvelopeItem[];
}

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: JWK;
}

export interface VerifiedEnvelope {
  readonly envelope: BatchEnvelope;
  readonly kid: string;
  readonly alg: EnvelopeAlg;
}

const envelopeSchema = z.strictObject({
  batchId: z.string().min(1),
  sourceSystem: z.string().min(1),
  targetSystem: z.string().min(1),
  purpose: z.string().min(1),
  consentPolicyVersion: z.string().min(1),
  createdAt: z.iso.datetime({ offset: true }),
  recordCount: z.int().nonnegative(),
  resourceTypes: z.array(z.string()),
  payloadHash: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  items: z.array(
    z.strictObject({
      sourceId: z.string(),
      canonicalId: z.string(),
      transformationVersion: z.string(),
      validationStatus: z.enum(['valid', 'warning']),
    }),
  ),
});

/**
 * Builds the envelope for a batch: counts the items, hashes the payload and, unless given, lists the
 * payload's `resourceType`s (sorted, unique).
 */
export function buildEnvelope(
  fields: Omit<BatchEnvelope, 'recordCount' | 'payloadHash' | 'resourceTypes' | 'createdAt'> & {
    readonly createdAt: Date | string;
    readonly resourceTypes?: readonly string[];
  },
  payload: readonly unknown[],
): BatchEnvelope {
  if (fields.items.length !== payload.length) {
    throw new SluiceError(
      'BATCH_COUNT_MISMATCH',
      `The manifest lists ${fields.items.length} items but the payload has ${payload.length}.`,
      { details: { manifest: fields.items.length, payload: payload.length } },
    );
  }
  const resourceTypes =
    fields.resourceTypes ??
    payload.flatMap((p) =>
      typeof p === 'object' &&
      p !== null &&
      typeof (p as { resourceType?: unknown }).resourceType === 'string'
        ? [(p as { resourceType: string }).resourceType]
        : [],
    );
  return {
    batchId: fields.batchId,
    sourceSystem: fields.sourceSystem,
    targetSystem: fields.targetSystem,
    purpose: fields.purpose,
    consentPolicyVersion: fields.consentPolicyVersion,
    createdAt: typeof fields.createdAt === 'string' ? fields.createdAt : fields.createdAt.toISOString(),
    recordCount: payload.length,
    resourceTypes: [...new Set(resourceTypes)].sort(),
    payloadHash: canonicalHash(payload),
    items: fields.items.map((i) => ({
      sourceId: i.sourceId,
      canonicalId: i.canonicalId,
      transformationVersion: i.transformationVersion,
      validationStatus: i.validationStatus,
    })),
  };
}

/** Signs the envelope as a compact JWS over its canonical JSON, naming the key in the protected header. */
export async function signEnvelope(
  envelope: BatchEnvelope,
  key: SigningKey,
  alg: EnvelopeAlg,
): Promise<string> {
  if (!(ENVELOPE_ALGORITHMS as readonly string[]).includes(alg)) {
    throw new SluiceError(
      'CFG_KEY_INVALID',
      `Envelope signing algorithm must be one of ${ENVELOPE_ALGORITHMS.join(', ')}.`,
    );
  }
  if (key.kid.trim() === '' || (key.privateKey.kid !== undefined && key.privateKey.kid !== key.kid)) {
    throw new SluiceError(
      'CFG_KEY_INVALID',
      'The envelope signing key needs a kid that matches its JWK kid.',
      {
        details: { kid: key.kid },
      },
    );
  }
  if (envelope.recordCount !== envelope.items.length) {
    throw new SluiceError(
      'BATCH_COUNT_MISMATCH',
      'Envelope recordCount differs from its item list; not signed.',
      {
        details: { recordCount: envelope.recordCount, items: envelope.items.length },
      },
    );
  }
  if (typeof key.privateKey.d !== 'string' || !keyFitsAlg(key.privateKey, alg)) {
    throw new SluiceError('CFG_KEY_INVALID', `The envelope signing key is not a private ${alg} key.`, {
      details: { kid: key.kid, alg },
    });
  }
  let privateKey: Awaited<ReturnType<typeof importJWK>>;
  try {
    privateKey = await importJWK(key.privateKey, alg);
  } catch (cause) {
    throw new SluiceError('CFG_KEY_INVALID', `The envelope signing key could not be imported for ${alg}.`, {
      cause,
      details: { kid: key.kid, alg },
    });
  }
  return new CompactSign(new TextEncoder().encode(canonicalJson(envelope)))
    .setProtectedHeader({ alg, kid: key.kid, typ: ENVELOPE_TYP })
    .sign(privateKey);
}

/**
 * Verifies a signed envelope against the trusted keys and the items delivered with it. A value, never an
 * exception: `ok` with the envelope, or a failure code (BATCH_ENVELOPE_MALFORMED, BATCH_SIGNING_KEY_UNKNOWN,
 * BATCH_SIGNATURE_INVALID, BATCH_COUNT_MISMATCH, BATCH_PAYLOAD_HASH_MISMATCH).
 */
export async function verifyEnvelope(
  jws: string,
  jwks: { readonly keys: readonly JWK[] },
  payloadItems: readonly unknown[],
): Promise<Outcome<VerifiedEnvelope>> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    if (typeof jws !== 'string' || jws.split('.').length !== 3) throw new Error('not compact');
    header = decodeProtectedHeader(jws);
  } catch {
    return reject('BATCH_ENVELOPE_MALFORMED', 'header', 'not a compact JWS');
  }
  if (header.typ !== ENVELOPE_TYP) {
    return reject('BATCH_ENVELOPE_MALFORMED', 'header.typ', `typ is not ${ENVELOPE_TYP}`);
  }
  const alg = ENVELOPE_ALGORITHMS.find((a) => a === header.alg);
  if (alg === undefined) return reject('BATCH_SIGNATURE_INVALID', 'header.alg', 'algorithm is not allowed');
  const kid = header.kid;
  if (typeof kid !== 'string' || kid === '')
    return reject('BATCH_SIGNING_KEY_UNKNOWN', 'header.kid', 'no kid');

  const candidates = jwks.keys.filter(
    (k) =>
      k.kid === kid && (k.use === undefined || k.use === 'sig') && (k.alg === undefined || k.alg === alg),
  );
  if (candidates.length === 0) {
    return reject('BATCH_SIGNING_KEY_UNKNOWN', 'header.kid', `kid ${kid} is not a trusted ${alg} key`);
  }

  let payloadBytes: Uint8Array | undefined;
  for (const candidate of candidates) {
    const publicJwk = publicPart(candidate, alg);
    if (publicJwk === undefined) continue;
    try {
      const key = await importJWK(publicJwk, alg);
      ({ payload: payloadBytes } = await compactVerify(jws, key, { algorithms: [alg] }));
      break;
    } catch {
      // Try the next key with the same kid (a JWKS may briefly hold two during a botched rotation).
    }
  }
  if (payloadBytes === undefined) {
    return reject('BATCH_SIGNATURE_INVALID', 'signature', `signature does not verify with kid ${kid}`);
  }

  let envelope: BatchEnvelope;
  try {
    envelope = envelopeSchema.parse(
      JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes)),
    );
  } catch {
    return reject('BATCH_ENVELOPE_MALFORMED', 'payload', 'signed payload is not a batch envelope');
  }
  if (envelope.recordCount !== envelope.items.length || envelope.recordCount !== payloadItems.length) {
    return reject(
      'BATCH_COUNT_MISMATCH',
      'recordCount',
      `envelope says ${envelope.recordCount} records, manifest lists ${envelope.items.length}, ${payloadItems.length} delivered`,
    );
  }
  let hash: string;
  try {
    hash = canonicalHash(payloadItems);
  } catch {
    return reject('BATCH_ENVELOPE_MALFORMED', 'items', 'delivered items are not JSON data');
  }
  if (hash !== envelope.payloadHash) {
    return reject(
      'BATCH_PAYLOAD_HASH_MISMATCH',
      'payloadHash',
      'delivered items do not match the signed hash',
    );
  }
  return ok({ envelope, kid, alg });
}

function reject(code: ErrorCode, path: string, message: string): Outcome<VerifiedEnvelope> {
  return fail(code, [issue(code, path, message)]);
}

function keyFitsAlg(jwk: JWK, alg: EnvelopeAlg): boolean {
  return alg === 'ES256'
    ? jwk.kty === 'EC' && jwk.crv === 'P-256'
    : jwk.kty === 'OKP' && jwk.crv === 'Ed25519';
}

/** Only the public members, so a JWKS that wrongly carries private parts still verifies as public. */
function publicPart(jwk: JWK, alg: EnvelopeAlg): JWK | undefined {
  if (!keyFitsAlg(jwk, alg) || typeof jwk.x !== 'string') return undefined;
  if (alg === 'ES256')
    return typeof jwk.y === 'string' ? { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y } : undefined;
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
}
