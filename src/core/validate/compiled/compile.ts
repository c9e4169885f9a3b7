import type { ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';
import { type ResourceFrame, safeKey, type ValidationContext } from './context.ts';
import { fhirTypeCode, isR4ResourceType, r4Definitions } from './definitions.ts';
import { type CompiledInvariant, compileInvariants, type Json } from './invariants.ts';
import { isPrimitiveType, jsonKind, PRIMITIVE_CHECKS, type PrimitiveCheck } from './primitives.ts';
import { type CodeSet, valueSetCodes } from './terminology.ts';

/**
 * Compiles R4 StructureDefinitions into validator closures. Each type (and each backbone element) becomes
 * an `ObjectSpec`: a map from JSON key (`valueQuantity`, `_birthDate`…) to a property checker that knows
 * its cardinality, its type's checker and its binding, plus bit masks for required elements and choice
 * groups. Validation is then one pass over the keys the object actually has, with no path strings or
 * definition lookups at run time. Types are compiled on first use and cached for the process.
 */

/** Checks one value (an array item or a singleton) at the context's current path. */
export type Check = (value: unknown, ctx: ValidationContext) => void;

interface Prop {
  /** Element name for messages: `given`, `value[x]`. */
  readonly name: string;
  /** Path segment: the JSON key without the `_` of a primitive extension. */
  readonly segment: string;
  /** `.segment`, precomputed: the path segment pushed for every node visited. */
  readonly dot: string;
  readonly array: boolean;
  readonly min: number;
  readonly max: number;
  readonly primitive: boolean;
  /** True for `_key`, the id/extensions of a primitive. */
  readonly ext: boolean;
  readonly reqBit: number;
  readonly choiceBit: number;
  readonly check: Check;
  /** Overrides the default array/singleton handling (contained resources). */
  readonly visit?: (value: unknown, ctx: ValidationContext) => void;
}

export interface ObjectSpec {
  /** `Patient`, `Patient.contact`, `HumanName`: for messages. */
  readonly typeName: string;
  readonly props: ReadonlyMap<string, Prop>;
  readonly required: readonly { readonly bit: number; readonly name: string; readonly min: number }[];
  readonly reqMask: number;
  readonly isResource: boolean;
  readonly invariants: readonly CompiledInvariant[] | undefined;
  readonly hook: ((o: Json, ctx: ValidationContext) => void) | undefined;
}

const typeSpecs = new Map<string, ObjectSpec>();
const resourceSpecs = new Map<string, ObjectSpec>();

/** The compiled spec of a complex datatype (`HumanName`, `SimpleQuantity`, `Element`…). */
export function typeSpec(name: string): ObjectSpec {
  let spec = typeSpecs.get(name);
  if (!spec) {
    const sd = r4Definitions().types.get(name);
    if (sd?.kind !== 'complex-type') throw new Error(`no complex R4 type named ${name}`);
    spec = compileStructure(sd, false);
    typeSpecs.set(name, spec);
  }
  return spec;
}

/** The compiled spec of a concrete resource type, or undefined if R4 has no such resource. */
export function resourceSpec(type: string): ObjectSpec | undefined {
  let spec = resourceSpecs.get(type);
  if (!spec) {
    const sd = r4Definitions().resources.get(type);
    if (!sd) return undefined;
    spec = compileStructure(sd, true);
    resourceSpecs.set(type, spec);
  }
  return spec;
}

/** How many types and resources have been compiled so far (for tests and the benchmark). */
export function compiledCount(): { types: number; resources: number } {
  return { types: typeSpecs.size, resources: resourceSpecs.size };
}

function lazy<T>(build: () => T): () => T {
  let value: T | undefined;
  return () => {
    if (value === undefined) value = build();
    return value;
  };
}

function compileStructure(sd: StructureDefinition, isResource: boolean): ObjectSpec {
  const elements = sd.snapshot?.element ?? [];
  const root = elements[0];
  if (!root?.path) throw new Error(`StructureDefinition ${sd.name} has no snapshot`);
  const children = new Map<string, ElementDefinition[]>();
  for (const el of elements.slice(1)) {
    if (!el.path || el.sliceName || el.id?.includes(':')) continue;
    const parent = el.path.slice(0, el.path.lastIndexOf('.'));
    children.set(parent, [...(children.get(parent) ?? []), el]);
  }
  const inner = new Map<string, () => ObjectSpec>();
  const innerSpec = (path: string): (() => ObjectSpec) => {
    let get = inner.get(path);
    if (!get) {
      get = lazy(() => buildSpec(path, `${sd.name}${path.slice(root.path?.length)}`, false, undefined));
      inner.set(path, get);
    }
    return get;
  };
  const buildSpec = (
    path: string,
    typeName: string,
    resource: boolean,
    invariants: readonly CompiledInvariant[] | undefined,
  ): ObjectSpec => {
    const props = new Map<string, Prop>();
    const required: { bit: number; name: string; min: number }[] = [];
    let reqMask = 0;
    let choiceCount = 0;
    for (const el of children.get(path) ?? []) {
      const name = el.path?.slice(path.length + 1) ?? '';
      const min = el.min ?? 0;
      const max = el.max === '*' ? Number.POSITIVE_INFINITY : Number(el.max ?? '1');
      const baseMax = el.base?.max ?? el.max ?? '1';
      const array = baseMax === '*' || Number(baseMax) > 1;
      let reqBit = 0;
      if (min > 0) {
        if (required.length >= 30) throw new Error(`too many required elements in ${typeName}`);
        reqBit = 1 << required.length;
        required.push({ bit: reqBit, name, min });
        reqMask |= reqBit;
      }
      const elementInvariants = compileInvariants(el.path ?? '', el.constraint);
      const choice = name.endsWith('[x]');
      let choiceBit = 0;
      if (choice) {
        if (choiceCount >= 30) throw new Error(`too many choice elements in ${typeName}`);
        choiceBit = 1 << choiceCount++;
      }
      const variants: { key: string; check: Check; primitive: boolean }[] = [];
      if (el.contentReference) {
        const target = el.contentReference.slice(el.contentReference.indexOf('#') + 1);
        const spec = innerSpec(target);
        variants.push({ key: name, check: objectCheck(spec), primitive: false });
      } else {
        for (const type of el.type ?? []) {
          const code = fhirTypeCode(el, type.code ?? '');
          const key = choice ? name.slice(0, -3) + code.charAt(0).toUpperCase() + code.slice(1) : name;
          variants.push({ key, ...elementCheck(el, code, type.profile, resource && name === 'contained') });
        }
      }
      for (const variant of variants) {
        const check = withInvariants(variant.check, elementInvariants);
        const base = { name, min, max, array, reqBit, choiceBit, primitive: variant.primitive };
        const visit = resource && name === 'contained' ? visitContained(check) : undefined;
        props.set(variant.key, {
          ...base,
          segment: variant.key,
          dot: `.${variant.key}`,
          ext: false,
          check,
          visit,
        });
        if (variant.primitive) {
          props.set(`_${variant.key}`, {
            ...base,
            segment: variant.key,
            dot: `.${variant.key}`,
            ext: true,
            check: elementExtensionCheck,
          });
        }
      }
    }
    return {
      typeName,
      props,
      required,
      reqMask,
      isResource: resource,
      invariants,
      hook: resource ? undefined : TYPE_HOOKS.get(typeName),
    };
  };
  const rootInvariants = compileInvariants(sd.type, root.constraint);
  return buildSpec(root.path, sd.name, isResource, rootInvariants);

  function elementCheck(
    el: ElementDefinition,
    code: string,
    profiles: readonly string[] | undefined,
    contained: boolean,
  ): { check: Check; primitive: boolean } {
    if (isPrimitiveType(code)) {
      return { check: primitiveCheck(code, requiredCodes(el)), primitive: true };
    }
    if ((code === 'BackboneElement' || code === 'Element') && children.has(el.path ?? '')) {
      return { check: objectCheck(innerSpec(el.path ?? '')), primitive: false };
    }
    if (code === 'Resource') return { check: resourceCheck(contained, undefined), primitive: false };
    if (isR4ResourceType(code)) return { check: resourceCheck(false, code), primitive: false };
    // A core profile on the type (SimpleQuantity, MoneyQuantity) is compiled from its own snapshot.
    const profile = profiles?.map((p) => p.slice(p.lastIndexOf('/') + 1)).find((p) => CORE_PROFILES.has(p));
    const typeName = profile ?? code;
    let check = objectCheck(lazy(() => typeSpec(typeName)));
    const codes = requiredCodes(el);
    if (codes && code === 'Coding') check = and(check, codingBinding(codes, el.binding?.valueSet ?? ''));
    if (codes && code === 'CodeableConcept')
      check = and(check, conceptBinding(codes, el.binding?.valueSet ?? ''));
    const targets = code === 'Reference' ? referenceTargets(el) : undefined;
    if (targets) check = and(check, referenceTargetCheck(targets));
    return { check, primitive: false };
  }
}

const CORE_PROFILES = new Set(['SimpleQuantity', 'MoneyQuantity']);

function requiredCodes(el: ElementDefinition): CodeSet | undefined {
  const binding = el.binding;
  if (binding?.strength !== 'required' || !binding.valueSet) return undefined;
  return valueSetCodes(binding.valueSet);
}

function and(a: Check, b: Check): Check {
  return (value, ctx) => {
    a(value, ctx);
    b(value, ctx);
  };
}

function withInvariants(check: Check, invariants: readonly CompiledInvariant[] | undefined): Check {
  if (!invariants) return check;
  return (value, ctx) => {
    check(value, ctx);
    runInvariants(invariants, value, ctx);
  };
}

function runInvariants(
  invariants: readonly CompiledInvariant[],
  value: unknown,
  ctx: ValidationContext,
): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  for (const inv of invariants) {
    if (!inv.test(value as Json, ctx)) ctx.error('VAL_INVARIANT', `${inv.key}: ${inv.human}`);
  }
}

function shortName(valueSet: string): string {
  return valueSet.split('|')[0] ?? valueSet;
}

function primitiveCheck(code: string, codes: CodeSet | undefined): Check {
  const check = PRIMITIVE_CHECKS[code] as PrimitiveCheck;
  if (!codes || code !== 'code') return check;
  return (value, ctx) => {
    if (check(value, ctx) && !codes.codes.has(value as string)) {
      ctx.error('VAL_CODE', 'code is not in the required value set');
    }
  };
}

function codingBinding(codes: CodeSet, valueSet: string): Check {
  const message = `coding is not in the required value set ${shortName(valueSet)}`;
  return (value, ctx) => {
    const coding = value as Json;
    if (typeof coding?.system !== 'string' || typeof coding.code !== 'string') return;
    if (!codes.bySystem.get(coding.system)?.has(coding.code)) ctx.error('VAL_CODE', message);
  };
}

/** A CodeableConcept under a required binding needs one coding from the set (text-only is let through). */
function conceptBinding(codes: CodeSet, valueSet: string): Check {
  const message = `no coding is in the required value set ${shortName(valueSet)}`;
  return (value, ctx) => {
    const codings = (value as Json)?.coding;
    if (!Array.isArray(codings)) return;
    let checkable = 0;
    for (const c of codings) {
      const coding = c as Json;
      if (typeof coding?.system !== 'string' || typeof coding.code !== 'string') continue;
      if (codes.bySystem.get(coding.system)?.has(coding.code)) return;
      checkable++;
    }
    if (checkable > 0) ctx.error('VAL_CODE', message);
  };
}

function referenceTargets(el: ElementDefinition): ReadonlySet<string> | undefined {
  const targets = new Set<string>();
  for (const type of el.type ?? []) {
    for (const profile of type.targetProfile ?? []) {
      const m = /^http:\/\/hl7\.org\/fhir\/StructureDefinition\/([A-Za-z]+)$/.exec(profile);
      if (!m?.[1] || m[1] === 'Resource') return undefined;
      targets.add(m[1]);
    }
  }
  return targets.size > 0 ? targets : undefined;
}

const LITERAL_REF =
  /^(?:[a-z][a-z0-9+.-]*:\/\/[^?#]*\/)?([A-Z][A-Za-z]+)(?:\/[A-Za-z0-9\-.]+(?:\/_history\/[A-Za-z0-9\-.]+)?|\?.*)$/;

/** Warns (as medplum does) when a relative or absolute literal reference names a type the element does not allow. */
function referenceTargetCheck(targets: ReadonlySet<string>): Check {
  const expected = [...targets].join(', ');
  return (value, ctx) => {
    const reference = (value as Json)?.reference;
    if (typeof reference !== 'string') return;
    const type = LITERAL_REF.exec(reference)?.[1];
    if (type === undefined || targets.has(type)) return;
    ctx.warning(
      'VAL_REFERENCE',
      isR4ResourceType(type)
        ? `reference points at a resource type this element does not allow (expected ${expected})`
        : 'reference names an unknown resource type',
      '.reference',
    );
  };
}

const elementExtensionCheck: Check = (value, ctx) => validateObject(typeSpec('Element'), value, ctx);

function objectCheck(spec: () => ObjectSpec): Check {
  return (value, ctx) => validateObject(spec(), value, ctx);
}

/**
 * Validates one object against its spec: a single pass over its own keys, then the required elements
 * not seen, choice conflicts, the type's hook (ext-1, local references) and its invariants.
 */
export function validateObject(spec: ObjectSpec, value: unknown, ctx: ValidationContext): void {
  if (ctx.full) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    ctx.error('VAL_TYPE', `expected an object (${spec.typeName}), found ${jsonKind(value)}`);
    return;
  }
  const o = value as Json;
  let seenReq = 0;
  let seenChoice = 0;
  let seenChoiceExt = 0;
  let count = 0;
  let onlyId = true;
  for (const key in o) {
    const v = o[key];
    if (v === undefined) continue;
    const prop = spec.props.get(key);
    if (prop === undefined) {
      if (key === 'resourceType' && spec.isResource) continue;
      count++;
      onlyId = false;
      ctx.error('VAL_UNKNOWN_ELEMENT', `unknown element for ${spec.typeName}`, `.${safeKey(key)}`);
      continue;
    }
    count++;
    if (key !== 'id') onlyId = false;
    seenReq |= prop.reqBit;
    if (prop.choiceBit !== 0) {
      if ((prop.ext ? seenChoiceExt : seenChoice) & prop.choiceBit) {
        ctx.error('VAL_CHOICE', `more than one type given for ${prop.name}`, `.${prop.name}`);
      }
      if (prop.ext) seenChoiceExt |= prop.choiceBit;
      else seenChoice |= prop.choiceBit;
    }
    if (prop.max === 0) {
      ctx.error('VAL_CARDINALITY', `${prop.name} is not allowed in ${spec.typeName}`, prop.dot);
      continue;
    }
    ctx.enter(prop.dot);
    if (prop.visit) prop.visit(v, ctx);
    else if (prop.ext) visitPrimitiveExtension(o, key, prop, v, ctx);
    else visitProperty(o, key, prop, v, ctx);
    ctx.leave();
  }
  if (count === 0 && !spec.isResource) {
    ctx.error('VAL_EMPTY', 'empty object (FHIR forbids empty elements)');
    return;
  }
  if (onlyId && !spec.isResource) {
    ctx.error('VAL_EMPTY', 'element has only an id (ele-1: it needs a value or children)');
  }
  if (seenReq !== spec.reqMask) {
    for (const r of spec.required) {
      if ((seenReq & r.bit) === 0) {
        ctx.error('VAL_CARDINALITY', `required element missing (min ${r.min})`, `.${r.name}`);
      }
    }
  }
  if ((seenChoice & seenChoiceExt) !== 0) checkChoiceExtensions(spec, o, ctx);
  if (spec.hook) spec.hook(o, ctx);
  if (spec.invariants) runInvariants(spec.invariants, o, ctx);
}

function visitProperty(o: Json, key: string, prop: Prop, v: unknown, ctx: ValidationContext): void {
  if (!prop.array) {
    if (v === null) ctx.error('VAL_EMPTY', 'null value (FHIR JSON forbids nulls here)');
    else if (Array.isArray(v))
      ctx.error('VAL_CARDINALITY', `${prop.name} takes a single value, found an array`);
    else prop.check(v, ctx);
    return;
  }
  if (!Array.isArray(v)) {
    ctx.error('VAL_CARDINALITY', `${prop.name} takes an array, found ${jsonKind(v)}`);
    return;
  }
  const n = v.length;
  if (n === 0) {
    ctx.error('VAL_EMPTY', 'empty array (FHIR forbids empty elements)');
    return;
  }
  if (n > prop.max || n < prop.min) {
    ctx.error('VAL_CARDINALITY', `${n} values, ${prop.name} allows ${prop.min}..${cardinality(prop.max)}`);
  }
  const partner = prop.primitive ? o[`_${key}`] : undefined;
  for (let i = 0; i < n; i++) {
    const item = v[i];
    ctx.enter(index(i));
    if (item === null || item === undefined) {
      // The one place JSON nulls are allowed: a repeating primitive whose `_` partner carries this item.
      if (!Array.isArray(partner) || partner[i] === null || partner[i] === undefined) {
        ctx.error('VAL_EMPTY', 'null array item');
      }
    } else {
      prop.check(item, ctx);
    }
    ctx.leave();
  }
}

function visitPrimitiveExtension(o: Json, key: string, prop: Prop, v: unknown, ctx: ValidationContext): void {
  if (!prop.array) {
    if (Array.isArray(v)) ctx.error('VAL_CARDINALITY', `${prop.name} takes a single value, found an array`);
    else prop.check(v, ctx);
    return;
  }
  if (!Array.isArray(v)) {
    ctx.error('VAL_CARDINALITY', `${prop.name} takes an array, found ${jsonKind(v)}`);
    return;
  }
  const values = o[key.slice(1)];
  if (Array.isArray(values) && values.length !== v.length) {
    ctx.error('VAL_CARDINALITY', 'primitive extension array and value array differ in length');
  }
  for (let i = 0; i < v.length; i++) {
    const item = v[i];
    ctx.enter(index(i));
    if (item === null || item === undefined) {
      if (!Array.isArray(values) || values[i] === null || values[i] === undefined) {
        ctx.error('VAL_EMPTY', 'null array item with no value');
      }
    } else {
      prop.check(item, ctx);
    }
    ctx.leave();
  }
}

/** `valueString` with `_valueBoolean`: the extension must belong to the type actually given. */
function checkChoiceExtensions(spec: ObjectSpec, o: Json, ctx: ValidationContext): void {
  const valueKeys = new Map<number, string>();
  for (const key of Object.keys(o)) {
    const prop = spec.props.get(key);
    if (prop && prop.choiceBit !== 0 && !prop.ext) valueKeys.set(prop.choiceBit, key);
  }
  for (const key of Object.keys(o)) {
    const prop = spec.props.get(key);
    if (!prop || prop.choiceBit === 0 || !prop.ext) continue;
    const valueKey = valueKeys.get(prop.choiceBit);
    if (valueKey !== undefined && valueKey !== key.slice(1)) {
      ctx.error(
        'VAL_CHOICE',
        `primitive extension and value of ${prop.name} differ in type`,
        `.${prop.name}`,
      );
    }
  }
}

const INDEXES = Array.from({ length: 64 }, (_, i) => `[${i}]`);

function index(i: number): string {
  return i < 64 ? (INDEXES[i] as string) : `[${i}]`;
}

function cardinality(max: number): string {
  return Number.isFinite(max) ? String(max) : '*';
}

/** `contained`: each item is a contained resource, validated with the index its frame needs for dom-3. */
function visitContained(check: Check): (value: unknown, ctx: ValidationContext) => void {
  return (value, ctx) => {
    if (!Array.isArray(value)) {
      ctx.error('VAL_CARDINALITY', `contained takes an array, found ${jsonKind(value)}`);
      return;
    }
    if (value.length === 0) {
      ctx.error('VAL_EMPTY', 'empty array (FHIR forbids empty elements)');
      return;
    }
    const frame = ctx.frame;
    for (let i = 0; i < value.length; i++) {
      if (frame) frame.containedIndex = i;
      const item = value[i];
      ctx.enter(index(i));
      if (item === null || item === undefined) ctx.error('VAL_EMPTY', 'null array item');
      else check(item, ctx);
      ctx.leave();
    }
    if (frame) frame.containedIndex = -1;
  };
}

/** An element typed `Resource` (any resource) or, like Bundle.entry.response.outcome, one resource type. */
function resourceCheck(contained: boolean, only: string | undefined): Check {
  return (value, ctx) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      ctx.error('VAL_TYPE', `expected a resource object, found ${jsonKind(value)}`);
      return;
    }
    if (only !== undefined && (value as Json).resourceType !== only) {
      ctx.error('VAL_NOT_A_RESOURCE', `expected a ${only} resource`);
      return;
    }
    validateResourceObject(value as Json, ctx, contained);
  };
}

/**
 * Validates a resource at the current path: the root, a Bundle entry, a Parameters value (each its own
 * frame for local references) or a contained resource (dom-2, dom-4, dom-5 apply to it).
 */
export function validateResourceObject(o: Json, ctx: ValidationContext, contained: boolean): void {
  const type = o.resourceType;
  if (typeof type !== 'string') {
    ctx.error('VAL_NOT_A_RESOURCE', 'resourceType is missing or not a string');
    return;
  }
  const spec = resourceSpec(type);
  if (!spec) {
    ctx.error('VAL_NOT_A_RESOURCE', 'resourceType is not an R4 resource type');
    return;
  }
  const outerResource = ctx.resource;
  const outerFrame = ctx.frame;
  ctx.resource = o;
  let frame: ResourceFrame | undefined;
  if (!contained) {
    frame = { resource: o, localRefs: undefined, containedIndex: -1, selfReferring: undefined };
    ctx.frame = frame;
  }
  validateObject(spec, o, ctx);
  if (contained) checkContainedRules(o, ctx);
  else if (frame) checkLocalReferences(o, frame, ctx);
  ctx.resource = outerResource;
  ctx.frame = outerFrame;
}

function checkContainedRules(o: Json, ctx: ValidationContext): void {
  if (o.contained !== undefined) {
    ctx.error('VAL_INVARIANT', 'dom-2: a contained resource SHALL NOT contain resources', '.contained');
  }
  const meta = o.meta as Json | undefined;
  if (typeof meta !== 'object' || meta === null) return;
  if (meta.versionId !== undefined || meta.lastUpdated !== undefined) {
    ctx.error(
      'VAL_INVARIANT',
      'dom-4: a contained resource SHALL NOT have a meta.versionId or a meta.lastUpdated',
      '.meta',
    );
  }
  if (meta.security !== undefined) {
    ctx.error(
      'VAL_INVARIANT',
      'dom-5: a contained resource SHALL NOT have a security label',
      '.meta.security',
    );
  }
}

/** ref-1 (a `#id` reference needs that contained resource) and dom-3 (each contained resource is referenced). */
function checkLocalReferences(o: Json, frame: ResourceFrame, ctx: ValidationContext): void {
  const contained = Array.isArray(o.contained) ? (o.contained as unknown[]) : [];
  const refs = frame.localRefs ?? [];
  if (contained.length === 0 && refs.length === 0) return;
  const ids = new Set<string>();
  for (const c of contained) {
    const id = (c as Json | null)?.id;
    if (typeof id === 'string') ids.add(id);
  }
  for (const ref of refs) {
    if (ref.reference && !ids.has(ref.target)) {
      ctx.errorAt(
        'VAL_INVARIANT',
        ref.path,
        'ref-1: SHALL have a contained resource if a local reference is provided',
      );
    }
  }
  const referenced = new Set(refs.map((r) => r.target));
  contained.forEach((c, i) => {
    if (typeof c !== 'object' || c === null) return;
    const id = (c as Json).id;
    if (typeof id === 'string' && referenced.has(id)) return;
    if (frame.selfReferring?.includes(i)) return;
    ctx.error(
      'VAL_INVARIANT',
      typeof id === 'string'
        ? 'dom-3: a contained resource SHALL be referred to from elsewhere in the resource'
        : 'dom-3: a contained resource needs an id to be referred to',
      `.contained${index(i)}`,
    );
  });
}

/** Rules of a datatype that are not plain cardinality or invariants of its own definition. */
const TYPE_HOOKS: ReadonlyMap<string, (o: Json, ctx: ValidationContext) => void> = new Map([
  [
    'Extension',
    (o: Json, ctx: ValidationContext): void => {
      let value = false;
      for (const key in o) {
        if (key.length > 5 && (key.startsWith('value') || key.startsWith('_value'))) {
          value = true;
          break;
        }
      }
      if ((o.extension !== undefined) === value) {
        ctx.error('VAL_INVARIANT', 'ext-1: Must have either extensions or value[x], not both');
      }
    },
  ],
  [
    'Reference',
    (o: Json, ctx: ValidationContext): void => {
      const reference = o.reference;
      if (typeof reference === 'string' && reference.charCodeAt(0) === 35 /* # */) {
        ctx.localRef(reference, '.reference', true);
      }
    },
  ],
]);
