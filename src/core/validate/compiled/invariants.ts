import { compile } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import type { ValidationContext } from './context.ts';

/**
 * FHIR invariants (ElementDefinition.constraint, severity error) as plain functions over the JSON
 * node. The ones on datatypes and on the resources Sluice moves are written natively (matched on the
 * exact R4 expression, so a changed definition falls back instead of silently diverging); the long
 * tail (StructureDefinition, TestScript, Questionnaire…) is evaluated with fhirpath.js, compiled once
 * per element on first use. Some rules are enforced structurally elsewhere and skipped here.
 */
export type Json = Record<string, unknown>;
export type InvariantTest = (node: Json, ctx: ValidationContext) => boolean;

export interface CompiledInvariant {
  readonly key: string;
  /** The R4 human text: no record content, safe for messages. */
  readonly human: string;
  readonly test: InvariantTest;
  readonly native: boolean;
}

/**
 * Handled by the compiled validator itself: ele-1 (empty values, id-only elements), ext-1 (in the
 * Extension validator), dom-2..dom-5 and ref-1 (resource frames), txt-1/txt-2 (xhtml checks).
 */
const STRUCTURAL = new Set(['ele-1', 'ext-1', 'dom-2', 'dom-3', 'dom-4', 'dom-5', 'ref-1', 'txt-1', 'txt-2']);

const UCUM = 'http://unitsofmeasure.org';
const AIT_VER = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification';
const CON_CLIN = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
const CON_VER = 'http://terminology.hl7.org/CodeSystem/condition-ver-status';

function has(o: Json, key: string): boolean {
  return o[key] !== undefined || o[`_${key}`] !== undefined;
}

/** `value.exists()` for a choice element: any `valueX` / `_valueX` key. */
function hasChoice(o: Json, prefix: string): boolean {
  for (const key of Object.keys(o)) {
    const name = key.charCodeAt(0) === 95 ? key.slice(1) : key;
    if (name.length > prefix.length && name.startsWith(prefix)) {
      const c = name.charCodeAt(prefix.length);
      if (c >= 65 && c <= 90) return true;
    }
  }
  return false;
}

function obj(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

function list(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

function hasCoding(cc: unknown, system: string, codes: readonly string[]): boolean {
  for (const c of list(obj(cc)?.coding)) {
    const coding = obj(c);
    if (coding?.system === system && codes.includes(coding.code as string)) return true;
  }
  return false;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined;
}

/**
 * Lower and upper bound (ms) of a date/dateTime/instant of any precision; undefined if unparseable.
 * `widen` stretches zone-less values by ±14 hours, for comparing a date with a zoned dateTime.
 */
export function instantBounds(s: unknown, widen: boolean): [number, number] | undefined {
  if (typeof s !== 'string') return undefined;
  const m =
    /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.exec(s);
  if (!m) return undefined;
  const slack = widen ? 14 * 3600_000 : 0;
  if (m[4] !== undefined) {
    const t = Date.parse(m[8] ? s : `${s}Z`);
    if (Number.isNaN(t)) return undefined;
    return m[8] ? [t, t] : [t - slack, t + slack];
  }
  const year = Number(m[1]);
  const month = m[2] ? Number(m[2]) - 1 : 0;
  const day = m[3] ? Number(m[3]) : 1;
  const lo = Date.UTC(year, month, day);
  const hi = m[3]
    ? Date.UTC(year, month, day + 1)
    : m[2]
      ? Date.UTC(year, month + 1, 1)
      : Date.UTC(year + 1, 0, 1);
  return [lo - slack, hi - 1 + slack];
}

/** `a <= b` for two date/time values: false only when a is certainly after b, whatever the precisions. */
function notAfter(a: unknown, b: unknown): boolean {
  // Same shape and zone (the usual case): ISO strings then order lexicographically.
  if (typeof a === 'string' && typeof b === 'string' && a.length === b.length && sameZone(a, b))
    return a <= b;
  const widen = typeof a === 'string' && typeof b === 'string' && a.includes('T') !== b.includes('T');
  const x = instantBounds(a, widen);
  const y = instantBounds(b, widen);
  if (!x || !y) return true;
  return x[0] <= y[1];
}

function sameZone(a: string, b: string): boolean {
  const n = a.length;
  if (n <= 10) return true;
  if (a.charCodeAt(n - 1) === 90 /* Z */) return b.charCodeAt(n - 1) === 90;
  return a.endsWith(b.slice(n - 6));
}

/** `low <= high` for two Quantities, decided only when both carry a value in the same unit. */
function quantityNotAfter(low: unknown, high: unknown): boolean {
  const l = obj(low);
  const h = obj(high);
  const lv = num(l?.value);
  const hv = num(h?.value);
  if (lv === undefined || hv === undefined) return true;
  const sameUnit = l?.code !== undefined ? l.code === h?.code && l.system === h?.system : l?.unit === h?.unit;
  return !sameUnit || lv <= hv;
}

/** The resource type a literal or conditional reference points at, as FHIRPath `resolve()` would see it. */
function referencedType(ref: unknown): string | undefined {
  const reference = obj(ref)?.reference;
  if (typeof reference !== 'string') return undefined;
  const m = /(?:^|\/)([A-Z][A-Za-z]+)(?:\/[A-Za-z0-9\-.]+(?:\/_history\/[^/]+)?|\?.*)$/.exec(reference);
  return m?.[1];
}

/** JSON value equality, independent of key order (FHIRPath `intersect` compares whole Codings). */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => jsonEqual((a as Json)[k], (b as Json)[k]));
}

export type NativeRow = readonly [key: string, expression: string, test: InvariantTest];

/** Quantity-like datatypes: value needs a code, system must be UCUM. */
const ucumCoded = (o: Json): boolean =>
  (has(o, 'code') || !has(o, 'value')) && (!has(o, 'system') || o.system === UCUM);

export const NATIVE_INVARIANTS: readonly NativeRow[] = [
  // Datatypes
  [
    'age-1',
    '(code.exists() or value.empty()) and (system.empty() or system = %ucum) and (value.empty() or value.hasValue().not() or value > 0)',
    (o) => ucumCoded(o) && (o.value === undefined || (num(o.value) ?? 1) > 0),
  ],
  ['qty-3', 'code.empty() or system.exists()', (o) => !has(o, 'code') || has(o, 'system')],
  ['att-1', 'data.empty() or contentType.exists()', (o) => !has(o, 'data') || has(o, 'contentType')],
  ['cpt-2', 'value.empty() or system.exists()', (o) => !has(o, 'value') || has(o, 'system')],
  [
    'cnt-3',
    "(code.exists() or value.empty()) and (system.empty() or system = %ucum) and (code.empty() or code = '1') and (value.empty() or value.hasValue().not() or value.toString().contains('.').not())",
    (o) =>
      ucumCoded(o) &&
      (!has(o, 'code') || o.code === '1') &&
      (o.value === undefined || typeof o.value !== 'number' || Number.isInteger(o.value)),
  ],
  ['drq-1', 'path.exists() xor searchParam.exists()', (o) => has(o, 'path') !== has(o, 'searchParam')],
  ['drq-2', 'path.exists() xor searchParam.exists()', (o) => has(o, 'path') !== has(o, 'searchParam')],
  ['dis-1', '(code.exists() or value.empty()) and (system.empty() or system = %ucum)', ucumCoded],
  [
    'drt-1',
    'code.exists() implies ((system = %ucum) and value.exists())',
    (o) => !has(o, 'code') || (o.system === UCUM && has(o, 'value')),
  ],
  ['exp-1', 'expression.exists() or reference.exists()', (o) => has(o, 'expression') || has(o, 'reference')],
  [
    'per-1',
    'start.hasValue().not() or end.hasValue().not() or (start <= end)',
    (o) => o.start === undefined || o.end === undefined || notAfter(o.start, o.end),
  ],
  ['rng-2', 'low.empty() or high.empty() or (low <= high)', (o) => quantityNotAfter(o.low, o.high)],
  [
    'rat-1',
    '(numerator.empty() xor denominator.exists()) and (numerator.exists() or extension.exists())',
    (o) =>
      (o.numerator === undefined) !== (o.denominator !== undefined) &&
      (o.numerator !== undefined || o.extension !== undefined),
  ],
  [
    'tim-1',
    'duration.empty() or durationUnit.exists()',
    (o) => !has(o, 'duration') || has(o, 'durationUnit'),
  ],
  ['tim-2', 'period.empty() or periodUnit.exists()', (o) => !has(o, 'period') || has(o, 'periodUnit')],
  ['tim-4', 'duration.exists() implies duration >= 0', (o) => (num(o.duration) ?? 0) >= 0],
  ['tim-5', 'period.exists() implies period >= 0', (o) => (num(o.period) ?? 0) >= 0],
  ['tim-6', 'periodMax.empty() or period.exists()', (o) => !has(o, 'periodMax') || has(o, 'period')],
  ['tim-7', 'durationMax.empty() or duration.exists()', (o) => !has(o, 'durationMax') || has(o, 'duration')],
  ['tim-8', 'countMax.empty() or count.exists()', (o) => !has(o, 'countMax') || has(o, 'count')],
  [
    'tim-9',
    "offset.empty() or (when.exists() and when.select($this in ('C' | 'CM' | 'CD' | 'CV')).allFalse())",
    (o) =>
      !has(o, 'offset') ||
      (has(o, 'when') && !list(o.when).some((w) => w === 'C' || w === 'CM' || w === 'CD' || w === 'CV')),
  ],
  ['tim-10', 'timeOfDay.empty() or when.empty()', (o) => !has(o, 'timeOfDay') || !has(o, 'when')],
  ['trd-1', 'data.empty() or timing.empty()', (o) => o.data === undefined || !hasChoice(o, 'timing')],
  [
    'trd-2',
    'condition.exists() implies data.exists()',
    (o) => o.condition === undefined || o.data !== undefined,
  ],
  [
    'trd-3',
    "(type = 'named-event' implies name.exists()) and (type = 'periodic' implies timing.exists()) and (type.startsWith('data-') implies data.exists())",
    (o) =>
      (o.type !== 'named-event' || has(o, 'name')) &&
      (o.type !== 'periodic' || hasChoice(o, 'timing')) &&
      (typeof o.type !== 'string' || !o.type.startsWith('data-') || o.data !== undefined),
  ],
  [
    'mqty-1',
    "(code.exists() or value.empty()) and (system.empty() or system = 'urn:iso:std:iso:4217')",
    (o) => (has(o, 'code') || !has(o, 'value')) && (!has(o, 'system') || o.system === 'urn:iso:std:iso:4217'),
  ],
  ['sqty-1', 'comparator.empty()', (o) => !has(o, 'comparator')],
  // Resources
  [
    'ait-1',
    "verificationStatus.coding.where(system = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification' and code = 'entered-in-error').exists() or clinicalStatus.exists()",
    (o) => o.clinicalStatus !== undefined || hasCoding(o.verificationStatus, AIT_VER, ['entered-in-error']),
  ],
  [
    'ait-2',
    "verificationStatus.coding.where(system = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification' and code = 'entered-in-error').empty() or clinicalStatus.empty()",
    (o) => o.clinicalStatus === undefined || !hasCoding(o.verificationStatus, AIT_VER, ['entered-in-error']),
  ],
  ['app-2', 'start.exists() = end.exists()', (o) => has(o, 'start') === has(o, 'end')],
  [
    'app-3',
    "(start.exists() and end.exists()) or (status in ('proposed' | 'cancelled' | 'waitlist'))",
    (o) =>
      (has(o, 'start') && has(o, 'end')) ||
      o.status === 'proposed' ||
      o.status === 'cancelled' ||
      o.status === 'waitlist',
  ],
  [
    'app-4',
    "Appointment.cancelationReason.exists() implies (Appointment.status='noshow' or Appointment.status='cancelled')",
    (o) => o.cancelationReason === undefined || o.status === 'noshow' || o.status === 'cancelled',
  ],
  ['app-1', 'type.exists() or actor.exists()', (o) => o.type !== undefined || o.actor !== undefined],
  [
    'apr-1',
    'participantType.exists() or actor.exists()',
    (o) => o.participantType !== undefined || o.actor !== undefined,
  ],
  ['sev-1', 'name.empty() or query.empty()', (o) => !has(o, 'name') || !has(o, 'query')],
  [
    'bdl-1',
    "total.empty() or (type = 'searchset') or (type = 'history')",
    (o) => !has(o, 'total') || o.type === 'searchset' || o.type === 'history',
  ],
  [
    'bdl-2',
    "entry.search.empty() or (type = 'searchset')",
    (o) => o.type === 'searchset' || !list(o.entry).some((e) => obj(e)?.search !== undefined),
  ],
  [
    'bdl-3',
    "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' or %resource.type = 'history'))",
    (o) => {
      const wanted = o.type === 'batch' || o.type === 'transaction' || o.type === 'history';
      return list(o.entry).every((e) => (obj(e)?.request !== undefined) === wanted);
    },
  ],
  [
    'bdl-4',
    "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type = 'transaction-response' or %resource.type = 'history'))",
    (o) => {
      const wanted = o.type === 'batch-response' || o.type === 'transaction-response' || o.type === 'history';
      return list(o.entry).every((e) => (obj(e)?.response !== undefined) === wanted);
    },
  ],
  [
    'bdl-7',
    "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()",
    (o) => {
      if (o.type === 'history') return true;
      const seen = new Set<string>();
      for (const e of list(o.entry)) {
        const entry = obj(e);
        if (typeof entry?.fullUrl !== 'string') continue;
        const version = obj(obj(obj(entry.resource)?.meta))?.versionId;
        const key = `${entry.fullUrl}${typeof version === 'string' ? version : ''}`;
        if (seen.has(key)) return false;
        seen.add(key);
      }
      return true;
    },
  ],
  [
    'bdl-9',
    "type = 'document' implies (identifier.system.exists() and identifier.value.exists())",
    (o) =>
      o.type !== 'document' ||
      (has(obj(o.identifier) ?? {}, 'system') && has(obj(o.identifier) ?? {}, 'value')),
  ],
  [
    'bdl-10',
    "type = 'document' implies (timestamp.hasValue())",
    (o) => o.type !== 'document' || o.timestamp !== undefined,
  ],
  [
    'bdl-11',
    "type = 'document' implies entry.first().resource.is(Composition)",
    (o) => o.type !== 'document' || obj(obj(list(o.entry)[0])?.resource)?.resourceType === 'Composition',
  ],
  [
    'bdl-12',
    "type = 'message' implies entry.first().resource.is(MessageHeader)",
    (o) => o.type !== 'message' || obj(obj(list(o.entry)[0])?.resource)?.resourceType === 'MessageHeader',
  ],
  [
    'bdl-5',
    'resource.exists() or request.exists() or response.exists()',
    (o) => o.resource !== undefined || o.request !== undefined || o.response !== undefined,
  ],
  [
    'bdl-8',
    "fullUrl.exists() implies fullUrl.contains('/_history/').not()",
    (o) => typeof o.fullUrl !== 'string' || !o.fullUrl.includes('/_history/'),
  ],
  [
    'cpl-3',
    'detail.empty() or reference.empty()',
    (o) => o.detail === undefined || o.reference === undefined,
  ],
  [
    'ctm-1',
    'onBehalfOf.exists() implies (member.resolve().iif(empty(), true, ofType(Practitioner).exists()))',
    (o) => {
      if (o.onBehalfOf === undefined) return true;
      const type = referencedType(o.member);
      return type === undefined || type === 'Practitioner';
    },
  ],
  [
    'cmp-1',
    'text.exists() or entry.exists() or section.exists()',
    (o) => o.text !== undefined || o.entry !== undefined || o.section !== undefined,
  ],
  [
    'cmp-2',
    'emptyReason.empty() or entry.empty()',
    (o) => o.emptyReason === undefined || o.entry === undefined,
  ],
  [
    'con-4',
    "abatement.empty() or clinicalStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-clinical' and (code='resolved' or code='remission' or code='inactive')).exists()",
    (o) =>
      !hasChoice(o, 'abatement') ||
      hasCoding(o.clinicalStatus, CON_CLIN, ['resolved', 'remission', 'inactive']),
  ],
  [
    'con-5',
    "verificationStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-ver-status' and code='entered-in-error').empty() or clinicalStatus.empty()",
    (o) => o.clinicalStatus === undefined || !hasCoding(o.verificationStatus, CON_VER, ['entered-in-error']),
  ],
  [
    'con-1',
    'summary.exists() or assessment.exists()',
    (o) => o.summary !== undefined || o.assessment !== undefined,
  ],
  ['con-2', 'code.exists() or detail.exists()', (o) => o.code !== undefined || o.detail !== undefined],
  [
    'ppc-1',
    'policy.exists() or policyRule.exists()',
    (o) => o.policy !== undefined || o.policyRule !== undefined,
  ],
  ...(['patient-privacy', 'research', 'adr', 'treatment'] as const).map(
    (code, i): NativeRow => [
      `ppc-${i + 2}`,
      `patient.exists() or scope.coding.where(system='something' and code='${code}').exists().not()`,
      (o) => o.patient !== undefined || !hasCoding(o.scope, 'something', [code]),
    ],
  ),
  ['fhs-1', 'age.empty() or born.empty()', (o) => !hasChoice(o, 'age') || !hasChoice(o, 'born')],
  ['fhs-2', 'age.exists() or estimatedAge.empty()', (o) => hasChoice(o, 'age') || !has(o, 'estimatedAge')],
  [
    'gol-1',
    '(detail.exists() and measure.exists()) or detail.exists().not()',
    (o) => !hasChoice(o, 'detail') || o.measure !== undefined,
  ],
  ['grp-1', 'member.empty() or (actual = true)', (o) => o.member === undefined || o.actual === true],
  [
    'imm-1',
    'documentType.exists() or reference.exists()',
    (o) => has(o, 'documentType') || has(o, 'reference'),
  ],
  [
    'imr-1',
    'vaccineCode.exists() or targetDisease.exists()',
    (o) => o.vaccineCode !== undefined || o.targetDisease !== undefined,
  ],
  ['lnk-1', 'item.count()>1', (o) => list(o.item).length > 1],
  [
    'lst-1',
    'emptyReason.empty() or entry.empty()',
    (o) => o.emptyReason === undefined || o.entry === undefined,
  ],
  [
    'lst-2',
    "mode = 'changes' or entry.deleted.empty()",
    (o) => o.mode === 'changes' || !list(o.entry).some((e) => has(obj(e) ?? {}, 'deleted')),
  ],
  [
    'lst-3',
    "mode = 'working' or entry.date.empty()",
    (o) => o.mode === 'working' || !list(o.entry).some((e) => has(obj(e) ?? {}, 'date')),
  ],
  ['mad-1', 'dose.exists() or rate.exists()', (o) => o.dose !== undefined || hasChoice(o, 'rate')],
  [
    'mdd-1',
    'whenHandedOver.empty() or whenPrepared.empty() or whenHandedOver >= whenPrepared',
    (o) =>
      o.whenHandedOver === undefined ||
      o.whenPrepared === undefined ||
      notAfter(o.whenPrepared, o.whenHandedOver),
  ],
  [
    'obs-6',
    'dataAbsentReason.empty() or value.empty()',
    (o) => o.dataAbsentReason === undefined || !hasChoice(o, 'value'),
  ],
  [
    'obs-7',
    'value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()',
    (o) => {
      if (!hasChoice(o, 'value')) return true;
      const own = list(obj(o.code)?.coding);
      if (own.length === 0) return true;
      return !list(o.component).some((c) =>
        list(obj(obj(c)?.code)?.coding).some((coding) => own.some((x) => jsonEqual(x, coding))),
      );
    },
  ],
  [
    'obs-3',
    'low.exists() or high.exists() or text.exists()',
    (o) => o.low !== undefined || o.high !== undefined || has(o, 'text'),
  ],
  ['org-3', "where(use = 'home').empty()", (o) => o.use !== 'home'],
  ['org-2', "where(use = 'home').empty()", (o) => o.use !== 'home'],
  [
    'inv-1',
    '(part.exists() and value.empty() and resource.empty()) or (part.empty() and (value.exists() xor resource.exists()))',
    (o) => {
      const value = hasChoice(o, 'value');
      const resource = o.resource !== undefined;
      return o.part !== undefined ? !value && !resource : value !== resource;
    },
  ],
  [
    'inv-1',
    'lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn',
    (o) =>
      o.lastModified === undefined || o.authoredOn === undefined || notAfter(o.authoredOn, o.lastModified),
  ],
  [
    'pat-1',
    'name.exists() or telecom.exists() or address.exists() or organization.exists()',
    (o) =>
      o.name !== undefined ||
      o.telecom !== undefined ||
      o.address !== undefined ||
      o.organization !== undefined,
  ],
  [
    'prr-1',
    'orderDetail.empty() or code.exists()',
    (o) => o.orderDetail === undefined || o.code !== undefined,
  ],
];

const nativeByKey = new Map<string, NativeRow[]>();
for (const row of NATIVE_INVARIANTS) nativeByKey.set(row[0], [...(nativeByKey.get(row[0]) ?? []), row]);

/** Invariant keys whose expression could not be compiled by fhirpath.js (reported, not enforced). */
export const uncompilableInvariants = new Set<string>();

/**
 * Compiles the error-severity constraints of one element (or type root) at `basePath`, skipping the
 * structural ones. Returns undefined when there is nothing to check.
 */
export function compileInvariants(
  basePath: string,
  constraints:
    | readonly { key?: string; severity?: string; expression?: string; human?: string }[]
    | undefined,
): readonly CompiledInvariant[] | undefined {
  const out: CompiledInvariant[] = [];
  for (const c of constraints ?? []) {
    const key = c.key ?? '';
    if (c.severity !== 'error' || !c.expression || STRUCTURAL.has(key)) continue;
    const human = c.human ?? key;
    const native = nativeByKey.get(key)?.find((row) => row[1] === c.expression);
    if (native) {
      out.push({ key, human, test: native[2], native: true });
      continue;
    }
    const test = fhirPathInvariant(basePath, c.expression);
    if (test) out.push({ key, human, test, native: false });
    else uncompilableInvariants.add(key);
  }
  return out.length > 0 ? out : undefined;
}

/** The long tail: fhirpath.js with the R4 model, `%resource` and `%rootResource` bound. */
function fhirPathInvariant(basePath: string, expression: string): InvariantTest | undefined {
  let fn: (node: unknown, env: Record<string, unknown>) => unknown;
  try {
    // trace() in R4 expressions (ref-1, que-1…) would print to stdout: record content must not leak there.
    fn = compile({ base: basePath, expression }, r4, { async: false, traceFn: () => undefined }) as typeof fn;
  } catch {
    return undefined;
  }
  return (node, ctx) => {
    try {
      const result = fn(node, { resource: ctx.resource, rootResource: ctx.frame?.resource ?? ctx.resource });
      return Array.isArray(result) && result.length === 1 && result[0] === true;
    } catch {
      // An expression fhirpath.js cannot evaluate on this node is not evidence of a violation.
      return true;
    }
  };
}
