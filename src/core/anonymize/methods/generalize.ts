import { isJsonObject, type JsonObject, str } from '../../fhir/resource.ts';
import { DATE_TYPES, truncateFhirDate } from '../dates.ts';
import { ageBandBounds, generalizeBirthDate, generalizeZip, MAX_DISCLOSED_AGE } from '../generalize.ts';
import type { GeneralizeParams } from '../rules.ts';
import { choiceKey } from '../rules.ts';
import { type MethodInput, type MethodResult, unsupported } from './types.ts';

const UCUM = 'http://unitsofmeasure.org';

/** Data types with no coarser form (a code hierarchy is out of scope): generalising them removes them. */
export const NOT_GENERALIZABLE: ReadonlySet<string> = new Set([
  'CodeableConcept',
  'Coding',
  'Quantity',
  'SimpleQuantity',
  'Duration',
  'Distance',
  'Count',
  'Money',
  'Range',
  'Ratio',
  'SampledData',
  'HumanName',
  'ContactPoint',
  'Identifier',
  'Reference',
  'Attachment',
  'Signature',
  'Annotation',
  'Narrative',
  'Extension',
]);
const YEARS_PER_UNIT: Readonly<Record<string, number>> = { a: 1, mo: 1 / 12, wk: 7 / 365.25, d: 1 / 365.25 };

/**
 * Generalisation (Safe Harbor): dates to the year (or month), birth dates of people over 89 removed,
 * addresses to ZIP3 (restricted prefixes as 000) plus the kept parts, ages to whole years with everything
 * over 89 as `>= 90` (or to a Range band when the element is a choice and a band width is set).
 */
export function generalizeMethod(input: MethodInput<GeneralizeParams>): MethodResult {
  const { value, type, params } = input;
  const { ctx } = input.record;
  if (DATE_TYPES.has(type) && typeof value === 'string') {
    if (input.name === 'birthDate') {
      const birth = generalizeBirthDate(value, ctx.asOf);
      if (birth.ageOver89) return { kind: 'remove', summary: 'birth date of a person over 89 removed' };
      const cut =
        birth.birthYear === undefined ? undefined : truncateFhirDate(value, params.granularity, type);
      return cut === undefined
        ? { kind: 'remove', summary: 'not a FHIR date; removed' }
        : { kind: 'replace', value: cut, summary: `birth date to ${params.granularity}, over 89 removed` };
    }
    const cut = truncateFhirDate(value, params.granularity, type);
    return cut === undefined
      ? { kind: 'remove', summary: 'not a FHIR date; removed' }
      : { kind: 'replace', value: cut, summary: `granularity=${params.granularity}` };
  }
  if (type === 'Address' && isJsonObject(value)) return address(value, input);
  if (input.parentType === 'Address' && typeof value === 'string') {
    if (input.name === 'postalCode') return zip3(value, str(input.parent.country), input);
    if (input.name === 'state' || input.name === 'country') {
      return { kind: 'replace', value, summary: 'kept (state level and above)' };
    }
    return { kind: 'remove', summary: 'address part below state level removed' };
  }
  if (type === 'Age' && isJsonObject(value)) return age(value, input);
  if (isJsonObject(value) && NOT_GENERALIZABLE.has(type)) {
    return { kind: 'remove', summary: `${type} has no generalised form; removed` };
  }
  if (isJsonObject(value)) return { kind: 'descend' };
  return unsupported('generalize', input);
}

function zipLists(input: MethodInput<GeneralizeParams>): string {
  return input.record.ctx.restrictedZip3?.listIds.join('+') ?? 'none';
}

function zip3(
  postalCode: string,
  country: string | undefined,
  input: MethodInput<GeneralizeParams>,
): MethodResult {
  const restricted = input.record.ctx.restrictedZip3?.prefixes ?? new Set<string>();
  const prefix = generalizeZip(postalCode, country, restricted);
  if (prefix === undefined) return { kind: 'remove', summary: 'not a US ZIP code; removed' };
  return { kind: 'replace', value: prefix, summary: `zip3 restricted=${zipLists(input)}` };
}

function address(value: JsonObject, input: MethodInput<GeneralizeParams>): MethodResult {
  const keep = new Set(input.params.addressKeep);
  const out: JsonObject = {};
  for (const part of ['use', 'type', 'state', 'country'] as const) {
    const v = str(value[part]);
    if (keep.has(part) && v !== undefined) out[part] = v;
  }
  const restricted = input.record.ctx.restrictedZip3?.prefixes ?? new Set<string>();
  const prefix = generalizeZip(str(value.postalCode), str(value.country), restricted);
  if (prefix !== undefined) out.postalCode = prefix;
  const summary = `zip3 restricted=${zipLists(input)} keep=${[...keep].join(',') || 'none'}`;
  if (Object.keys(out).length === 0) return { kind: 'remove', summary };
  return { kind: 'replace', value: out, summary };
}

function age(value: JsonObject, input: MethodInput<GeneralizeParams>): MethodResult {
  const unit = str(value.code) ?? 'a';
  const factor = YEARS_PER_UNIT[unit];
  if (typeof value.value !== 'number' || factor === undefined || value.value < 0) {
    return { kind: 'remove', summary: 'age without a value in years; removed' };
  }
  const years = value.value * factor;
  const quantity = (n: number): JsonObject => ({ value: n, unit: 'a', system: UCUM, code: 'a' });
  const width = input.params.ageBandWidth;
  if (width !== undefined && input.choice) {
    const band = ageBandBounds(years, width);
    if (!band) return { kind: 'remove', summary: 'age out of range; removed' };
    const range: JsonObject = { low: quantity(band.low) };
    if (band.high !== undefined) range.high = quantity(band.high);
    return {
      kind: 'replace',
      value: range,
      key: choiceKey(input.name, 'Range'),
      summary: `age band width=${width}, over 89 as one band`,
    };
  }
  const whole = Math.floor(years);
  if (whole > MAX_DISCLOSED_AGE) {
    return {
      kind: 'replace',
      value: { ...quantity(MAX_DISCLOSED_AGE + 1), comparator: '>=' },
      summary: 'age in years, over 89 as >= 90',
    };
  }
  return { kind: 'replace', value: quantity(whole), summary: 'age in years, over 89 as >= 90' };
}
