import { createHmac } from 'node:crypto';
import { isJsonObject } from '../../fhir/resource.ts';
import { keyFor, personPseudonym } from '../context.ts';
import { DATE_TYPES, shiftFhirDate } from '../dates.ts';
import { hmacKey, type PseudonymKey } from '../pseudonym.ts';
import type { DateShiftParams } from '../rules.ts';
import { type MethodInput, type MethodResult, unsupported } from './types.ts';

/**
 * The day offset of one person: HMAC of the person's pseudonym, in [-maxDays, maxDays] without 0. Every
 * date of the person moves by the same offset, so intervals between them are kept; without the key the
 * offset cannot be learnt from the pseudonym.
 */
export function dateShiftOffset(key: PseudonymKey, pseudonym: string, maxDays: number): number {
  const mac = createHmac('sha256', hmacKey(key)).update(`sluice:date-shift\u001f${pseudonym}`).digest();
  const r = mac.readUInt32BE(0) % (2 * maxDays);
  return r < maxDays ? r - maxDays : r - maxDays + 1;
}

/** Per-person date shifting. The offset is never recorded anywhere: it would undo the shift. */
export function dateshiftMethod(input: MethodInput<DateShiftParams>): MethodResult {
  const { value, type } = input;
  if (!DATE_TYPES.has(type) || typeof value !== 'string') {
    return isJsonObject(value) ? { kind: 'descend' } : unsupported('dateshift', input);
  }
  const { patientId, ctx } = input.record;
  if (patientId === undefined) {
    return {
      kind: 'remove',
      summary: 'no patient to shift for; removed',
      warning: { code: 'ANON_NO_PERSON', message: 'date shift needs the patient the resource is about' },
    };
  }
  const key = keyFor(ctx, input.params.keyId);
  const offset = dateShiftOffset(key, personPseudonym(ctx, key, patientId), input.params.maxDays);
  const shifted = shiftFhirDate(value, offset);
  if (shifted === undefined) return { kind: 'remove', summary: 'not a FHIR date; removed' };
  return {
    kind: 'replace',
    value: shifted,
    summary: `per-person shift within ±${input.params.maxDays}d key=${key.id}`,
  };
}
