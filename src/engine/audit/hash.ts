import { hash, timingSafeEqual } from 'node:crypto';

/** SHA-256 digests: the one hash of the audit trail (leaves, nodes, chain, checkpoints). */
export type Hash = Uint8Array;

export const HASH_BYTES = 32;

/** The chain hash "before" entry 0: every chain starts from 32 zero bytes. */
export const ZERO_HASH: Hash = new Uint8Array(HASH_BYTES);

/** SHA-256 of the concatenation of `parts` (one-shot: hashing is on the append path of every entry). */
export function sha256(...parts: readonly Uint8Array[]): Hash {
  return hash('sha256', parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts), 'buffer');
}

/**
 * The running chain: H(previous chain hash || leaf hash). It makes the order of entries part of every
 * later hash, so a verifier walking the log can say at which position an entry went missing or moved.
 */
export function chainHash(previous: Hash, leaf: Hash): Hash {
  return sha256(previous, leaf);
}

export function toHex(hash: Uint8Array): string {
  return Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength).toString('hex');
}

const HEX_HASH = /^[0-9a-f]{64}$/;

export function isHexHash(value: unknown): value is string {
  return typeof value === 'string' && HEX_HASH.test(value);
}

/** Parses a lower-case 64-digit hex hash; undefined for anything else (never a partial parse). */
export function fromHex(value: string): Hash | undefined {
  return isHexHash(value) ? new Uint8Array(Buffer.from(value, 'hex')) : undefined;
}

/** Constant-time comparison; false for different lengths. */
export function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}
