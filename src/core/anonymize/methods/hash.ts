import { createHash } from 'node:crypto';
import { SluiceError } from '../../errors/index.ts';
import { applyIdentity } from './identity.ts';
import type { MethodInput, MethodResult } from './types.ts';

export const HASH_SYSTEM = 'urn:sluice:hash';

/** SHA-256 over the flow's salt and the value, hex (64 characters: still a valid FHIR id). */
export function saltedHash(salt: Uint8Array, value: string): string {
  return createHash('sha256').update(salt).update('\u001f').update(value, 'utf8').digest('hex');
}

/**
 * Salted hashing: unkeyed apart from the per-flow salt, so anyone holding the salt can test guesses; use
 * it only where the destination must match values it already knows (pseudonymize otherwise).
 */
export function hashMethod(input: MethodInput<unknown>): MethodResult {
  const salt = input.record.ctx.hashSalt;
  if (!salt) throw new SluiceError('ANON_CONTEXT_INVALID', 'The hash method needs a salt.');
  return applyIdentity(input, {
    method: 'hash',
    summary: 'sha256 salted per flow',
    resourceId: (ref) => saltedHash(salt, `${ref.resourceType}/${ref.id}`),
    identifier: (system, value) => ({ system: HASH_SYSTEM, value: saltedHash(salt, `${system}|${value}`) }),
    text: (value) => saltedHash(salt, value),
  });
}
