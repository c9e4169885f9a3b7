import { isJsonObject, type JsonObject } from '../../fhir/resource.ts';
import { keyedUniform, keyFor, personPseudonym } from '../context.ts';
import type { PerturbParams } from '../rules.ts';
import { type MethodInput, type MethodResult, unsupported } from './types.ts';

const INTEGER_TYPES: ReadonlySet<string> = new Set(['integer', 'positiveInt', 'unsignedInt', 'integer64']);
const QUANTITY_TYPES: ReadonlySet<string> = new Set([
  'Quantity',
  'SimpleQuantity',
  'Age',
  'Duration',
  'Distance',
  'Count',
]);

/**
 * Bounded noise: value + u·bound with u in [-1, 1] drawn by HMAC from the person's pseudonym, the element
 * path and the measure (`code`), so one person's repeated measurements move together (trends survive) and
 * re-releases cannot be averaged out. Non-negative values stay non-negative.
 */
export function perturbMethod(input: MethodInput<PerturbParams>): MethodResult {
  const { value, type } = input;
  if (QUANTITY_TYPES.has(type) && isJsonObject(value)) {
    if (typeof value.value !== 'number') return { kind: 'remove', summary: 'quantity without value removed' };
    const noisy = perturbNumber(value.value, 'decimal', input);
    if (noisy.kind !== 'replace') return noisy;
    // A fresh quantity: extensions and anything else on the source element are not carried over.
    const out: JsonObject = { value: noisy.value };
    for (const part of ['comparator', 'unit', 'system', 'code'] as const) {
      if (typeof value[part] === 'string') out[part] = value[part];
    }
    return { ...noisy, value: out };
  }
  if (typeof value === 'number') return perturbNumber(value, type, input);
  if (isJsonObject(value)) return { kind: 'descend' };
  return unsupported('perturb', input);
}

function perturbNumber(
  v: number,
  type: string,
  input: MethodInput<PerturbParams>,
): Extract<MethodResult, { kind: 'replace' | 'remove' }> {
  const { patientId, ctx, measure } = input.record;
  if (patientId === undefined) {
    return {
      kind: 'remove',
      summary: 'no patient to seed noise; removed',
      warning: { code: 'ANON_NO_PERSON', message: 'perturbation needs the patient the resource is about' },
    };
  }
  const { maxDelta, maxRatio, decimals } = input.params;
  const key = keyFor(ctx, input.params.keyId);
  const seed = `sluice:perturb\u001f${personPseudonym(ctx, key, patientId)}\u001f${input.path}\u001f${measure ?? ''}`;
  const u = keyedUniform(key, seed) * 2 - 1;
  const bound = maxDelta ?? Math.abs(v) * (maxRatio ?? 0);
  let out = v + u * bound;
  if (INTEGER_TYPES.has(type)) out = Math.round(out);
  else out = round(out, decimals ?? decimalsOf(v));
  if (v >= 0 && out < 0) out = 0;
  if (type === 'positiveInt' && out < 1) out = 1;
  const summary =
    maxDelta === undefined ? `noise ±${maxRatio}×value key=${key.id}` : `noise ±${maxDelta} key=${key.id}`;
  return { kind: 'replace', value: out, summary };
}

function decimalsOf(v: number): number {
  const text = String(v);
  if (text.includes('e')) return 6;
  const dot = text.indexOf('.');
  return dot < 0 ? 0 : text.length - dot - 1;
}

function round(v: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(v * f) / f;
}
