import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import type { Pseudonym } from '../model/ids.ts';

/** The smallest pseudonymisation key Sluice accepts (bytes). HMAC-SHA256 keys shorter than this are guessable. */
export const MIN_PSEUDONYM_KEY_BYTES = 32;

export interface PseudonymKey {
  /** A short, non-secret name for the key (recorded with each pseudonym so keys can rotate). */
  readonly id: string;
  readonly secret: Uint8Array;
}

/**
 * Keyed pseudonymisation: HMAC-SHA256 over the source system, resource type and id. The same input and
 * key give the same pseudonym in every run and every file, so references stay consistent; without the
 * key it cannot be reversed or recomputed from a guessed identifier.
 */
export function pseudonymize(key: PseudonymKey, system: string, resourceType: string, id: string): Pseudonym {
  const mac = createHmac('sha256', hmacKey(key)).update(`${system}\u001f${resourceType}\u001f${id}`).digest();
  // 20 bytes (160 bits) of the MAC, base32 (lower case, no padding): 32 characters, collision-safe at scale.
  return `p${base32(mac.subarray(0, 20))}` as Pseudonym;
}

const keyObjects = new WeakMap<PseudonymKey, KeyObject>();

/** The key as a KeyObject, made once per key: importing raw bytes on every HMAC dominates the cost. */
export function hmacKey(key: PseudonymKey): KeyObject {
  let found = keyObjects.get(key);
  if (!found) {
    found = createSecretKey(key.secret);
    keyObjects.set(key, found);
  }
  return found;
}

/** Lower-case RFC 4648 base32 without padding: safe in FHIR ids, URLs and file names. */
export function toBase32(bytes: Uint8Array): string {
  return base32(bytes);
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}
