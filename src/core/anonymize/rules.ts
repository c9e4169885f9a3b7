import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../errors/index.ts';
import { type CompiledPath, compileFhirPath } from '../policy/fhirpath.ts';
import type { DataClass } from './classification.ts';
import {
  capitalize,
  childElement,
  elementNames,
  elementTypes,
  isKnownType,
  isPrimitiveType,
  isResourceTypeName,
} from './schema.ts';

/**
 * Anonymization rule sets: per destination and purpose, an ordered list of `{path, method, params}`.
 * The first rule matching an element wins and covers its whole subtree; elements no rule matches get the
 * default method of their class. Rule sets are validated against the R4 element model when loaded, so a
 * misspelt path is a configuration error rather than a rule that silently never fires.
 */

export const METHOD_NAMES = [
  'keep',
  'redact',
  'pseudonymize',
  'tokenize',
  'hash',
  'generalize',
  'dateshift',
  'perturb',
  'suppress',
] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

const KeyId = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'a key id: 1-64 letters, digits, dot, dash, underscore');
const Empty = z.strictObject({});
const PseudonymizeParams = z.strictObject({ keyId: KeyId.optional() });
const TokenizeParams = z.strictObject({
  namespace: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'a lower-case namespace name'),
});
const GeneralizeParams = z.strictObject({
  /** Dates: `year` (Safe Harbor) or `month`. */
  granularity: z.enum(['year', 'month']).default('year'),
  /** Ages in a choice element (`onsetAge`) become a Range band of this width; over 89 is one band. */
  ageBandWidth: z.int().min(1).max(50).optional(),
  /** Address parts kept besides the ZIP3 (`postalCode`). */
  addressKeep: z.array(z.enum(['state', 'country', 'use', 'type'])).default(['state', 'country']),
});
const DateShiftParams = z.strictObject({ maxDays: z.int().min(1).max(3650), keyId: KeyId.optional() });
const PerturbParams = z
  .strictObject({
    /** Absolute bound of the noise. */
    maxDelta: z.number().positive().optional(),
    /** Relative bound of the noise (0.05 = ±5 %). */
    maxRatio: z.number().positive().max(1).optional(),
    /** Decimal places of the result (default: those of the input). */
    decimals: z.int().min(0).max(8).optional(),
    keyId: KeyId.optional(),
  })
  .refine((p) => (p.maxDelta === undefined) !== (p.maxRatio === undefined), {
    message: 'give exactly one of maxDelta or maxRatio',
  });

export type PseudonymizeParams = z.infer<typeof PseudonymizeParams>;
export type TokenizeParams = z.infer<typeof TokenizeParams>;
export type GeneralizeParams = z.infer<typeof GeneralizeParams>;
export type DateShiftParams = z.infer<typeof DateShiftParams>;
export type PerturbParams = z.infer<typeof PerturbParams>;

/** A method with validated parameters. */
export type MethodSpec =
  | { readonly method: 'keep' }
  | { readonly method: 'redact' }
  | { readonly method: 'suppress' }
  | { readonly method: 'hash' }
  | { readonly method: 'pseudonymize'; readonly params: PseudonymizeParams }
  | { readonly method: 'tokenize'; readonly params: TokenizeParams }
  | { readonly method: 'generalize'; readonly params: GeneralizeParams }
  | { readonly method: 'dateshift'; readonly params: DateShiftParams }
  | { readonly method: 'perturb'; readonly params: PerturbParams };

/**
 * What a rule's path selects:
 * - `Patient.address.line`, `*.id`: a path from a resource root (`*` = any resource type);
 * - `@HumanName`, `@date`, `@Address.postalCode`: any element of that FHIR data type, then the rest.
 * A segment matches its JSON key, its element name, or `name[x]` for any type of a choice element.
 */
export type Selector =
  | { readonly kind: 'path'; readonly root: string; readonly segments: readonly string[] }
  | { readonly kind: 'type'; readonly type: string; readonly segments: readonly string[] };

export interface CompiledRule {
  /** Position in the rule set: lower wins. */
  readonly index: number;
  readonly path: string;
  readonly selector: Selector;
  readonly where?: CompiledPath;
  readonly whereText?: string;
  readonly spec: MethodSpec;
}

export interface RuleSet {
  readonly id: string;
  readonly version: number;
  readonly destination: string;
  readonly purpose: string;
  readonly description?: string;
  /** When set, resources of other types are suppressed whole. */
  readonly resourceTypes?: ReadonlySet<string>;
  /** Adds HL7 security labels (REDACTED, PSEUDED…) to `meta.security` of each output. */
  readonly securityLabels: boolean;
  readonly defaults: Readonly<Record<DataClass, MethodSpec>>;
  readonly rules: readonly CompiledRule[];
}

/** Fail-closed defaults: identifiers and clinical content are removed unless the rule set says otherwise. */
export const FAIL_CLOSED_DEFAULTS: Readonly<Record<DataClass, MethodSpec>> = {
  direct: { method: 'redact' },
  quasi: { method: 'redact' },
  sensitive: { method: 'redact' },
  other: { method: 'keep' },
};

const MethodRef = z.union([
  z.enum(METHOD_NAMES),
  z.strictObject({ method: z.enum(METHOD_NAMES), params: z.record(z.string(), z.unknown()).optional() }),
]);

const RuleSchema = z.strictObject({
  path: z.string().min(1),
  where: z.string().min(1).optional(),
  method: z.enum(METHOD_NAMES),
  params: z.record(z.string(), z.unknown()).optional(),
  /** Why the rule exists (for reviewers; not used). */
  note: z.string().optional(),
});

export const RuleSetFileSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a lower-case slug'),
  version: z.int().min(1).default(1),
  destination: z.string().min(1),
  purpose: z.string().min(1),
  description: z.string().optional(),
  resourceTypes: z.array(z.string()).min(1).optional(),
  securityLabels: z.boolean().default(true),
  defaults: z
    .strictObject({
      direct: MethodRef.optional(),
      quasi: MethodRef.optional(),
      sensitive: MethodRef.optional(),
      other: MethodRef.optional(),
    })
    .default({}),
  rules: z.array(RuleSchema).default([]),
});
export type RuleSetFile = z.input<typeof RuleSetFileSchema>;

/** Validates a parsed rule set (from YAML or code); throws ANON_RULES_INVALID listing every problem. */
export function compileRuleSet(input: unknown, source = 'rule set'): RuleSet {
  const parsed = RuleSetFileSchema.safeParse(input);
  if (!parsed.success) {
    // Every problem at once: the schema's, and those of each rule that is well-formed on its own.
    const problems = parsed.error.issues.map((i) => `${keyOf(i.path) || '(root)'}: ${i.message}`);
    const rules = isRecord(input) && Array.isArray(input.rules) ? input.rules : [];
    rules.forEach((raw, index) => {
      const rule = RuleSchema.safeParse(raw);
      if (rule.success) checkRule(rule.data, index, problems);
    });
    throw invalid(source, problems);
  }
  const file = parsed.data;
  const problems: string[] = [];
  const defaults = { ...FAIL_CLOSED_DEFAULTS };
  for (const cls of ['direct', 'quasi', 'sensitive', 'other'] as const) {
    const ref = file.defaults[cls];
    if (ref === undefined) continue;
    const spec =
      typeof ref === 'string'
        ? methodSpec(ref, undefined, `defaults.${cls}`, problems)
        : methodSpec(ref.method, ref.params, `defaults.${cls}`, problems);
    if (spec) defaults[cls] = spec;
  }
  const rules: CompiledRule[] = [];
  file.rules.forEach((rule, index) => {
    const compiled = checkRule(rule, index, problems);
    if (compiled) rules.push(compiled);
  });
  for (const type of file.resourceTypes ?? []) {
    if (!isResourceTypeName(type)) problems.push(`resourceTypes: ${type} is not an R4 resource type`);
  }
  if (problems.length > 0) throw invalid(source, problems);
  return {
    id: file.id,
    version: file.version,
    destination: file.destination,
    purpose: file.purpose,
    ...(file.description === undefined ? {} : { description: file.description }),
    ...(file.resourceTypes ? { resourceTypes: new Set(file.resourceTypes) } : {}),
    securityLabels: file.securityLabels,
    defaults,
    rules,
  };
}

/** Checks one schema-valid rule against the element model; pushes its problems, returns it when sound. */
function checkRule(
  rule: z.infer<typeof RuleSchema>,
  index: number,
  problems: string[],
): CompiledRule | undefined {
  const key = `rules[${index}]`;
  const spec = methodSpec(rule.method, rule.params, `${key}.params`, problems);
  const selector = parseSelector(rule.path, `${key}.path`, problems);
  let where: CompiledPath | undefined;
  if (rule.where !== undefined) {
    try {
      where = compileFhirPath(rule.where);
    } catch (err) {
      problems.push(`${key}.where: not a FHIRPath expression (${firstLine(err)})`);
    }
  }
  if (!spec || !selector) return undefined;
  return {
    index,
    path: rule.path,
    selector,
    ...(where ? { where, whereText: rule.where } : {}),
    spec,
  };
}

/** A dotted key with list indices in brackets: `rules[2].params.granularity`. */
export function keyOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads and compiles a YAML or JSON rule set file. */
export function loadRuleSetFile(path: string): RuleSet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SluiceError('CFG_FILE_MISSING', `Cannot read the anonymization rule set ${path}.`, {
      cause: err,
      details: { file: path },
    });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw invalid(path, [`not valid YAML: ${firstLine(err)}`]);
  }
  return compileRuleSet(data, path);
}

function invalid(source: string, problems: readonly string[]): SluiceError {
  return new SluiceError(
    'ANON_RULES_INVALID',
    `The anonymization rule set ${source} is invalid: ${problems.join('; ')}`,
    { details: { source, problems } },
  );
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

function methodSpec(
  method: MethodName,
  params: Record<string, unknown> | undefined,
  key: string,
  problems: string[],
): MethodSpec | undefined {
  const input = params ?? {};
  const check = <T>(schema: z.ZodType<T>): T | undefined => {
    const result = schema.safeParse(input);
    if (result.success) return result.data;
    for (const i of result.error.issues) problems.push(`${keyOf([key, ...i.path])}: ${i.message}`);
    return undefined;
  };
  switch (method) {
    case 'keep':
    case 'redact':
    case 'suppress':
    case 'hash':
      return check(Empty) === undefined ? undefined : { method };
    case 'pseudonymize': {
      const p = check(PseudonymizeParams);
      return p && { method, params: p };
    }
    case 'tokenize': {
      const p = check(TokenizeParams);
      return p && { method, params: p };
    }
    case 'generalize': {
      const p = check(GeneralizeParams);
      return p && { method, params: p };
    }
    case 'dateshift': {
      const p = check(DateShiftParams);
      return p && { method, params: p };
    }
    case 'perturb': {
      const p = check(PerturbParams);
      return p && { method, params: p };
    }
  }
}

const SELECTOR = /^(\*|[A-Z][A-Za-z]*|@[A-Za-z][A-Za-z0-9]*)((?:\.[a-z][A-Za-z0-9]*(?:\[x\])?)*)$/;

/** Parses and checks a rule path against the element model; pushes a problem and returns undefined if wrong. */
export function parseSelector(path: string, key: string, problems: string[]): Selector | undefined {
  const match = SELECTOR.exec(path.trim());
  if (!match) {
    problems.push(`${key}: ${path} is not an element path (Type.element…, *.element… or @Type.element…)`);
    return undefined;
  }
  const head = match[1] as string;
  const segments = (match[2] ?? '').split('.').filter((s) => s !== '');
  let selector: Selector;
  let startTypes: string[];
  if (head.startsWith('@')) {
    const type = head.slice(1);
    if (!isKnownType(type)) {
      problems.push(`${key}: ${type} is not an R4 data type`);
      return undefined;
    }
    selector = { kind: 'type', type, segments };
    startTypes = [type];
  } else {
    if (head !== '*' && !isResourceTypeName(head)) {
      problems.push(`${key}: ${head} is not an R4 resource type`);
      return undefined;
    }
    selector = { kind: 'path', root: head, segments };
    startTypes = [head === '*' ? 'DomainResource' : head];
  }
  let types = startTypes;
  for (const segment of segments) {
    const next = types.flatMap((t) => segmentTypes(t, segment));
    if (next.length === 0) {
      problems.push(`${key}: ${path} names no element at ${segment}`);
      return undefined;
    }
    types = [...new Set(next)];
  }
  return selector;
}

/** The types a rule segment can reach from an object of `type`. */
function segmentTypes(type: string, segment: string): string[] {
  if (isPrimitiveType(type) && segment !== 'id' && segment !== 'extension') return [];
  const declared = elementNames(type);
  if (segment.endsWith('[x]')) return declared.includes(segment) ? elementTypes(type, segment) : [];
  if (declared.includes(segment)) return elementTypes(type, segment);
  if (declared.includes(`${segment}[x]`)) return elementTypes(type, `${segment}[x]`);
  const concrete = childElement(type, segment);
  if (concrete) return [concrete.type];
  return [];
}

/** The JSON key a choice element takes for a type: `onset` + `Range`. */
export function choiceKey(name: string, type: string): string {
  return name + capitalize(type);
}
