import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { SluiceError } from '../../core/errors/index.ts';

/**
 * Encryption of the record copies the state store keeps — quarantined records and the change log,
 * whole source resources with PHI — under a key of the flow's (`state.encryption`). AES-256-GCM with
 * a fresh 96-bit IV per value; the additional data binds a value to its table, flow and row, so a value
 * copied to another row does not open. Values stored before a key was configured (plain JSON) still
 * read; a sealed value never reads without its key.
 */

/**
 * The flow's key: `keyId` names it in every value it seals (rotate by changing both, keeping the old
 * one in `previous` for as long as values it sealed are kept).
 */
export interface PayloadKey {
  readonly keyId: string;
  /** 32 bytes for AES-256, derived from the configured secret. */
  readonly key: Uint8Array;
  /** Keys of before a rotation: they open what they sealed and seal nothing. */
  readonly previous?: readonly PayloadKey[];
}

const PREFIX = 'sluice-enc1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Derives the AES key from the configured secret (at least 32 bytes) with HKDF-SHA256. */
export function payloadKey(
  secret: Uint8Array,
  keyId: string,
  previous: readonly PayloadKey[] = [],
): PayloadKey {
  const key = new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(0), 'sluice state payloads v1', 32));
  return previous.length === 0 ? { keyId, key } : { keyId, key, previous };
}

/** True when the stored value was sealed (whatever the key). */
export function isSealed(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

/** `sluice-enc1:<keyId>:<base64url(iv ‖ ciphertext ‖ tag)>` */
export function sealPayload(key: PayloadKey, plaintext: string, aad: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([iv, cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${PREFIX}${key.keyId}:${body.toString('base64url')}`;
}

/** The plaintext of a stored value: unsealed values as they are, sealed ones with the key they name. */
export function openPayload(key: PayloadKey | undefined, stored: string, aad: string, where: string): string {
  if (!isSealed(stored)) return stored;
  const rest = stored.slice(PREFIX.length);
  const colon = rest.indexOf(':');
  const keyId = colon < 0 ? '' : rest.slice(0, colon);
  if (key === undefined) {
    throw new SluiceError(
      'STATE_PAYLOAD_LOCKED',
      `${where} is encrypted under key ${keyId || '(unnamed)'} and the flow names no state.encryption key.`,
      { details: { keyId } },
    );
  }
  const opener = [key, ...(key.previous ?? [])].find((k) => k.keyId === keyId);
  if (opener === undefined) {
    const known = [key.keyId, ...(key.previous ?? []).map((k) => k.keyId)];
    throw new SluiceError(
      'STATE_PAYLOAD_KEY_MISMATCH',
      `${where} is encrypted under key ${keyId || '(unnamed)'}; the flow's state.encryption names ${known.join(', ')}.`,
      { details: { keyId, configured: known } },
    );
  }
  const body = Buffer.from(rest.slice(colon + 1), 'base64url');
  try {
    if (body.length < IV_BYTES + TAG_BYTES) throw new Error('too short');
    const decipher = createDecipheriv('aes-256-gcm', opener.key, body.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    return Buffer.concat([
      decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)),
      decipher.final(),
    ]).toString('utf8');
  } catch (err) {
    throw new SluiceError(
      'STATE_PAYLOAD_TAMPERED',
      `${where} does not open under key ${keyId}: it was altered, moved from another row, or sealed by another secret under the same key id.`,
      { cause: err, details: { keyId } },
    );
  }
}
