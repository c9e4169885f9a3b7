import { keyFor } from '../context.ts';
import { pseudonymize } from '../pseudonym.ts';
import type { PseudonymizeParams } from '../rules.ts';
import { applyIdentity } from './identity.ts';
import type { MethodInput, MethodResult } from './types.ts';

/** The URI system of pseudonymised identifiers; the key id is part of it so rotated keys never collide. */
export function pseudonymSystem(keyId: string): string {
  return `urn:sluice:pseudonym:${encodeURIComponent(keyId)}`;
}

/**
 * Keyed pseudonymisation (HMAC-SHA256 via `pseudonymize`): `Patient/123` becomes `Patient/p…` in the
 * resource itself and in every reference to it, in every file, for as long as the key is the same.
 */
export function pseudonymizeMethod(input: MethodInput<PseudonymizeParams>): MethodResult {
  const { ctx } = input.record;
  const key = keyFor(ctx, input.params.keyId);
  return applyIdentity(input, {
    method: 'pseudonymize',
    summary: `hmac-sha256 key=${key.id}`,
    resourceId: (ref) => pseudonymize(key, ctx.system, ref.resourceType, ref.id),
    identifier: (system, value) => ({
      system: pseudonymSystem(key.id),
      value: pseudonymize(key, system, 'Identifier', value),
    }),
    text: (value) => pseudonymize(key, ctx.system, input.path, value),
  });
}
