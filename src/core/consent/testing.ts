/** Shared helpers for the consent tests (not used by production code). */
import type { PseudonymKey } from '../anonymize/pseudonym.ts';
import type { Outcome } from '../mapping/outcome.ts';

export const TEST_KEY: PseudonymKey = { id: 'test', secret: new Uint8Array(32).fill(7) };

/** The value of an ok outcome, or a test failure that lists the issues. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (!outcome.ok) throw new Error(`expected ok, got ${outcome.code}: ${JSON.stringify(outcome.issues)}`);
  return outcome.value;
}
