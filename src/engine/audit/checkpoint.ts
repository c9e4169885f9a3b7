import {
  CompactSign,
  compactVerify,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  errors as joseErrors,
} from 'jose';
import { z } from 'zod';
import { canonicalJson } from '../../core/batch/canonical-json.ts';
import { SluiceError } from '../../core/errors/index.ts';
import { isHexHash } from './hash.ts';

/**
 * Signed checkpoints (signed tree heads): {log, treeSize, rootHash, chainHead, at} as a compact JWS.
 * Anyone holding the public JWKS can check that the log still has the entries it had when the
 * checkpoint was signed. Keys rotate by kid: verification accepts any public key of the JWKS, so retired
 * keys stay in the set while checkpoints they signed are kept.
 */

/** The JWS `typ` of a checkpoint, so no other token signed with the same key can pass as one. */
export const CHECKPOINT_TYP = 'sluice-audit-checkpoint+jws';

export const CHECKPOINT_ALGORITHMS = ['Ed25519', 'EdDSA', 'ES256'] as const;
export type CheckpointAlgorithm = (typeof CHECKPOINT_ALGORITHMS)[number];

/** What a checkpoint asserts. Hashes are lower-case hex; `at` is when it was signed. */
export interface CheckpointBody {
  /** The id of the log (kept in the store), so a checkpoint of one log never vouches for another. */
  readonly log: string;
  readonly treeSize: number;
  /** RFC 9162 Merkle Tree Hash of the first `treeSize` entries. */
  readonly rootHash: string;
  /** The chain hash of entry `treeSize - 1`. */
  readonly chainHead: string;
  readonly at: string;
}

export interface Checkpoint extends CheckpointBody {
  readonly keyId: string;
  readonly jws: string;
}

export interface CheckpointSigner {
  readonly keyId: string;
  readonly alg: CheckpointAlgorithm;
  /** The public half, ready to publish in the verification JWKS. */
  readonly publicJwk: JWK;
  sign(body: CheckpointBody): Promise<Checkpoint>;
}

const KID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'] as const;

/**
 * A signer from a private JWK (OKP Ed25519, or EC P-256 for ES256) with a `kid`. Throws
 * CFG_KEY_INVALID naming what is wrong with the key, never echoing key material.
 */
export async function createCheckpointSigner(privateJwk: unknown): Promise<CheckpointSigner> {
  if (typeof privateJwk !== 'object' || privateJwk === null || Array.isArray(privateJwk)) {
    throw keyError('The audit signing key is not a JWK object.');
  }
  const jwk = privateJwk as JWK;
  if (typeof jwk.kid !== 'string' || !KID_PATTERN.test(jwk.kid)) {
    throw keyError(
      'The audit signing key has no usable "kid" (letters, digits, . _ : -; rotation relies on it).',
    );
  }
  if (typeof jwk.d !== 'string') throw keyError(`The audit signing key ${jwk.kid} is not a private key.`);
  const alg = algorithmFor(jwk);
  let key: Awaited<ReturnType<typeof importJWK>>;
  try {
    key = await importJWK(jwk, alg);
  } catch (err) {
    throw keyError(`The audit signing key ${jwk.kid} could not be imported as ${alg}.`, err);
  }
  const keyId = jwk.kid;
  const publicJwk = publicHalf(jwk, alg);
  return {
    keyId,
    alg,
    publicJwk,
    async sign(body: CheckpointBody): Promise<Checkpoint> {
      const payload = new TextEncoder().encode(canonicalJson({ ...body }, { iJson: true }));
      const jws = await new CompactSign(payload)
        .setProtectedHeader({ alg, kid: keyId, typ: CHECKPOINT_TYP })
        .sign(key);
      return { ...body, keyId, jws };
    },
  };
}

/** A fresh key pair for checkpoints (tests, and an operator's key generation). */
export async function generateCheckpointKey(
  kid: string,
  alg: 'Ed25519' | 'ES256' = 'Ed25519',
): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { privateJwk, publicJwk };
}

/**
 * Checks that a value is a JWKS of public signature keys with kids. A private key in a verification
 * set is a configuration mistake (the secret is being spread), so it is refused, not ignored.
 */
export function parseJwks(value: unknown): JSONWebKeySet {
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) {
    throw keyError('The audit verification JWKS has no "keys" array (or it is empty).');
  }
  keys.forEach((key: unknown, index) => {
    if (typeof key !== 'object' || key === null) throw keyError(`JWKS key #${index} is not an object.`);
    const jwk = key as Record<string, unknown>;
    if (typeof jwk.kid !== 'string' || !KID_PATTERN.test(jwk.kid))
      throw keyError(`JWKS key #${index} has no usable kid.`);
    if (PRIVATE_MEMBERS.some((m) => m in jwk)) {
      throw keyError(`JWKS key ${jwk.kid} holds private key material; publish only the public half.`);
    }
  });
  return { keys: keys as JWK[] };
}

export type CheckpointCheck =
  | { readonly ok: true; readonly checkpoint: Checkpoint }
  | { readonly ok: false; readonly message: string };

const bodySchema = z
  .object({
    log: z.string().min(1).max(128),
    treeSize: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    rootHash: z.string().refine(isHexHash),
    chainHead: z.string().refine(isHexHash),
    at: z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
  })
  .strict();

/**
 * A verifier bound to one JWKS. The result says why a checkpoint fails (signature, unknown key, wrong
 * type, malformed payload) without quoting it.
 */
export function checkpointVerifier(jwks: JSONWebKeySet): (jws: string) => Promise<CheckpointCheck> {
  const keySet = createLocalJWKSet(parseJwks(jwks));
  return async (jws) => {
    let verified: Awaited<ReturnType<typeof compactVerify>>;
    try {
      verified = await compactVerify(jws, keySet, { algorithms: [...CHECKPOINT_ALGORITHMS] });
    } catch (err) {
      return { ok: false, message: signatureProblem(err) };
    }
    const header = verified.protectedHeader;
    if (header.typ !== CHECKPOINT_TYP)
      return { ok: false, message: 'the JWS is not a Sluice audit checkpoint (typ)' };
    if (typeof header.kid !== 'string') return { ok: false, message: 'the checkpoint names no key id' };
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(verified.payload));
    } catch {
      return { ok: false, message: 'the checkpoint payload is not JSON' };
    }
    const body = bodySchema.safeParse(json);
    if (!body.success) return { ok: false, message: 'the checkpoint payload is malformed' };
    return { ok: true, checkpoint: { ...body.data, keyId: header.kid, jws } };
  };
}

/** Reads a checkpoint's claims without checking its signature (for display and ordering only). */
export function peekCheckpoint(jws: string): CheckpointBody | undefined {
  const payload = jws.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const body = bodySchema.safeParse(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
    return body.success ? body.data : undefined;
  } catch {
    return undefined;
  }
}

function algorithmFor(jwk: JWK): CheckpointAlgorithm {
  const natural: CheckpointAlgorithm | undefined =
    jwk.kty === 'OKP' && jwk.crv === 'Ed25519'
      ? 'Ed25519'
      : jwk.kty === 'EC' && jwk.crv === 'P-256'
        ? 'ES256'
        : undefined;
  if (!natural)
    throw keyError(`The audit signing key ${jwk.kid} must be an Ed25519 (OKP) or P-256 (EC) key.`);
  if (jwk.alg === undefined) return natural;
  const compatible = natural === 'Ed25519' ? ['Ed25519', 'EdDSA'] : ['ES256'];
  if (!compatible.includes(jwk.alg)) {
    throw keyError(
      `The audit signing key ${jwk.kid} declares alg ${jwk.alg}, which does not fit its key type.`,
    );
  }
  return jwk.alg as CheckpointAlgorithm;
}

function publicHalf(jwk: JWK, alg: CheckpointAlgorithm): JWK {
  const out: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, kid: jwk.kid, alg, use: 'sig' };
  if (jwk.y !== undefined) out.y = jwk.y;
  return out;
}

function signatureProblem(err: unknown): string {
  if (err instanceof joseErrors.JWKSNoMatchingKey)
    return 'no key of the JWKS matches the checkpoint kid and alg';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed)
    return 'the checkpoint signature does not verify';
  if (err instanceof joseErrors.JOSEAlgNotAllowed)
    return 'the checkpoint uses an algorithm that is not allowed';
  if (err instanceof joseErrors.JWSInvalid) return 'the checkpoint is not a valid compact JWS';
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return 'several JWKS keys match the checkpoint kid';
  return 'the checkpoint could not be verified';
}

function keyError(message: string, cause?: unknown): SluiceError {
  return new SluiceError('CFG_KEY_INVALID', message, cause === undefined ? {} : { cause });
}
