import { asArray, isJsonObject, type Json, type JsonObject, str } from '../fhir/resource.ts';
import { type Issue, issue, warning } from '../mapping/outcome.ts';
import { isTrue } from '../policy/fhirpath.ts';
import type { DataClass } from './classification.ts';
import { ClassificationCache } from './classification-cache.ts';
import { type Classification, classifyRoot } from './classify.ts';
import { type AnonymizeContext, assertContext, personOf, referenceIndex } from './context.ts';
import { actsOnWhole, runMethod } from './methods/index.ts';
import type { MethodInput, RecordScope } from './methods/types.ts';
import type { CompiledRule, MethodName, MethodSpec, RuleSet, Selector } from './rules.ts';
import { childElement, type ElementInfo, isPrimitiveType, isResourceTypeName } from './schema.ts';

/**
 * The anonymization pipeline for one FHIR R4 resource: normalise (drop nulls, empty strings and elements
 * the model does not know) → classify every element → transform per the rule set (first matching rule
 * wins for a whole subtree; class defaults elsewhere; free text dropped unless a rule names it) → audit
 * what was removed or changed, by path and method, never by value.
 */

export interface AuditEntry {
  /** Element path without indices: `Patient.address.postalCode`. */
  readonly path: string;
  readonly class: DataClass;
  readonly method: MethodName;
  /** Parameters and outcome in words (`zip3 restricted=hhs-2000`, `key=k1`): never a value. */
  readonly paramsSummary: string;
  /** What decided: `rule 3 (Patient.address)`, `default quasi`, `free-text`, `unknown-element`… */
  readonly basis: string;
  /** How many elements of this path were treated this way. */
  readonly count: number;
}

export interface AnonymizeResult {
  /** The transformed resource; null when withheld (suppressed, type not released, or not a resource). */
  readonly resource: JsonObject | null;
  readonly audit: readonly AuditEntry[];
  readonly warnings: readonly Issue[];
}

export const SECURITY_LABEL_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue';
/** Element classifications, made once per position and reused across resources (bounded). */
const CLASSES = new ClassificationCache();

/** The classifications a record reuses: its context's, else the process's. */
const classesOf = (run: Run): ClassificationCache => run.scope.ctx.classifications ?? CLASSES;

const LABELS: Readonly<Record<MethodName, string | undefined>> = {
  keep: undefined,
  redact: 'REDACTED',
  suppress: 'REDACTED',
  pseudonymize: 'PSEUDED',
  hash: 'PSEUDED',
  tokenize: 'MASKED',
  dateshift: 'MASKED',
  perturb: 'MASKED',
  generalize: 'ABSTRED',
};
const LABEL_DISPLAY: Readonly<Record<string, string>> = {
  REDACTED: 'redacted',
  PSEUDED: 'pseudonymized',
  MASKED: 'masked',
  ABSTRED: 'abstracted',
};

export function anonymize(resource: unknown, ruleSet: RuleSet, ctx: AnonymizeContext): AnonymizeResult {
  assertContext(ruleSet, ctx);
  if (!isJsonObject(resource) || typeof resource.resourceType !== 'string') {
    return withheld([issue('REC_UNPARSEABLE', '', 'not a FHIR resource object')]);
  }
  const resourceType = resource.resourceType;
  if (!isResourceTypeName(resourceType)) {
    return withheld([issue('REC_UNSUPPORTED_TYPE', resourceType, 'not an R4 resource type')]);
  }
  const measure = firstCoding(resource.code);
  const patientId = personOf(resource, ctx);
  const scope: RecordScope = {
    resourceType,
    ctx,
    ...(patientId === undefined ? {} : { patientId }),
    ...(measure === undefined ? {} : { measure }),
  };
  const run = new Run(ruleSet, scope);
  if (ruleSet.resourceTypes && !ruleSet.resourceTypes.has(resourceType)) {
    run.suppress(resourceType, classifyRoot(resourceType).class, 'resourceTypes', 'type not released');
    return run.result(null);
  }
  const root = buildRoot(resource, resourceType, run);
  if (run.suppressed) return run.result(null);
  const out = transform(run, root, undefined, false);
  if (run.suppressed) return run.result(null);
  const value = out !== undefined && isJsonObject(out.value) ? out.value : { resourceType };
  if (ruleSet.securityLabels) addLabels(value, run.labels);
  return run.result(value);
}

function withheld(warnings: Issue[]): AnonymizeResult {
  return { resource: null, audit: [], warnings };
}

function firstCoding(code: Json | undefined): string | undefined {
  if (!isJsonObject(code)) return undefined;
  const coding = asArray(code.coding)[0];
  if (!isJsonObject(coding)) return undefined;
  const value = str(coding.code);
  return value === undefined ? undefined : `${str(coding.system) ?? ''}|${value}`;
}

function addLabels(resource: JsonObject, labels: ReadonlySet<string>): void {
  if (labels.size === 0) return;
  const meta = isJsonObject(resource.meta) ? { ...resource.meta } : {};
  const security = asArray(meta.security).filter(isJsonObject);
  for (const code of [...labels].sort()) {
    if (security.some((c) => c.system === SECURITY_LABEL_SYSTEM && c.code === code)) continue;
    security.push({ system: SECURITY_LABEL_SYSTEM, code, display: LABEL_DISPLAY[code] ?? code });
  }
  meta.security = security;
  resource.meta = meta;
}

/** Per-record state: audit, warnings, labels, and whether the record is withheld. */
class Run {
  readonly ruleSet: RuleSet;
  readonly scope: RecordScope;
  readonly labels = new Set<string>();
  suppressed = false;
  readonly #audit = new Map<string, { entry: AuditEntry; count: number }>();
  readonly #warnings = new Map<string, Issue>();

  constructor(ruleSet: RuleSet, scope: RecordScope) {
    this.ruleSet = ruleSet;
    this.scope = scope;
  }

  record(
    path: string,
    cls: DataClass,
    method: MethodName,
    paramsSummary: string,
    basis: string,
    removed: boolean,
  ): void {
    const key = `${path}\u001f${method}\u001f${paramsSummary}\u001f${basis}`;
    const found = this.#audit.get(key);
    if (found) found.count++;
    else
      this.#audit.set(key, { entry: { path, class: cls, method, paramsSummary, basis, count: 1 }, count: 1 });
    const label = removed ? 'REDACTED' : LABELS[method];
    if (label !== undefined) this.labels.add(label);
  }

  suppress(path: string, cls: DataClass, basis: string, summary: string): void {
    this.suppressed = true;
    this.record(path, cls, 'suppress', summary, basis, true);
    this.warn('ANON_RESOURCE_SUPPRESSED', path, `resource withheld (${basis})`);
  }

  warn(code: string, path: string, message: string): void {
    const key = `${code}\u001f${path}`;
    if (!this.#warnings.has(key)) this.#warnings.set(key, warning(code, path, message));
  }

  result(resource: JsonObject | null): AnonymizeResult {
    const audit = [...this.#audit.values()].map(({ entry, count }) => ({ ...entry, count }));
    return { resource, audit, warnings: [...this.#warnings.values()] };
  }
}

/** One element occurrence (array items are separate nodes with the same path). */
interface Node {
  readonly key: string;
  readonly element?: ElementInfo;
  /** FHIR type; for a resource node its resourceType. */
  readonly type: string;
  readonly value: Json;
  readonly path: string;
  readonly depth: number;
  readonly cls: Classification;
  /** The path with choice elements in schema form (`Observation.value[x]`), known elements only. */
  readonly schemaPath: string;
  readonly primitive: boolean;
  readonly isResource: boolean;
  readonly unknown: boolean;
  readonly parent?: Node;
  readonly typeStack: readonly string[];
  readonly segs: readonly ElementInfo[];
  readonly rootType: string;
  readonly groups: Group[];
  readonly companions: string[];
  /** Lowest index of a rule matching this node itself (Infinity: none). */
  exact: number;
  /** Lowest index of a rule matching any strict descendant. */
  below: number;
}

interface Group {
  readonly key: string;
  readonly isArray: boolean;
  readonly items: Node[];
}

function buildRoot(resource: JsonObject, resourceType: string, run: Run): Node {
  const root: Node = {
    key: '',
    type: resourceType,
    value: resource,
    path: resourceType,
    depth: 0,
    cls: classesOf(run).root(resourceType),
    schemaPath: resourceType,
    primitive: false,
    isResource: true,
    unknown: false,
    typeStack: [resourceType],
    segs: [],
    rootType: resourceType,
    groups: [],
    companions: [],
    exact: Number.POSITIVE_INFINITY,
    below: Number.POSITIVE_INFINITY,
  };
  match(root, run);
  buildChildren(root, run);
  return root;
}

function buildChildren(node: Node, run: Run): void {
  if (!isJsonObject(node.value)) return;
  for (const [key, raw] of Object.entries(node.value)) {
    if (key === 'resourceType' && node.isResource) continue;
    if (key.startsWith('_')) {
      node.companions.push(key);
      continue;
    }
    const element = childElement(node.type, key);
    const values = (Array.isArray(raw) ? raw : [raw]).filter((v) => v !== null && v !== '');
    if (values.length === 0) continue;
    const shapeOk = element !== undefined && element.isArray === Array.isArray(raw);
    const items = values.map((value) => buildChild(node, key, shapeOk ? element : undefined, value, run));
    node.groups.push({ key, isArray: Array.isArray(raw), items });
    for (const item of items) node.below = Math.min(node.below, item.exact, item.below);
  }
}

function buildChild(
  parent: Node,
  key: string,
  element: ElementInfo | undefined,
  value: Json,
  run: Run,
): Node {
  let type = element?.type ?? '';
  let isResource = false;
  if (type === 'Resource' && isJsonObject(value) && typeof value.resourceType === 'string') {
    if (isResourceTypeName(value.resourceType)) {
      type = value.resourceType;
      isResource = true;
    }
  }
  const primitive = element !== undefined && isPrimitiveType(type);
  const unknown = element === undefined || primitive === isJsonObject(value) || Array.isArray(value);
  const path = `${parent.path}.${key}`;
  const depth = parent.depth + 1;
  const schemaPath =
    element === undefined
      ? parent.schemaPath
      : `${parent.schemaPath}.${element.choice ? `${element.name}[x]` : element.name}`;
  const cls =
    unknown || element === undefined
      ? classesOf(run).unknown(parent.cls)
      : classesOf(run).element(parent.cls, {
          resourceType: parent.rootType,
          schemaPath,
          concretePath: path,
          parentType: parent.type,
          element,
          depth,
        });
  const node: Node = {
    key,
    ...(element ? { element } : {}),
    type,
    value,
    path,
    depth,
    cls,
    schemaPath,
    primitive,
    isResource,
    unknown,
    parent,
    typeStack: [...parent.typeStack, type],
    segs: element ? [...parent.segs, element] : parent.segs,
    rootType: parent.rootType,
    groups: [],
    companions: [],
    exact: Number.POSITIVE_INFINITY,
    below: Number.POSITIVE_INFINITY,
  };
  if (unknown) return node;
  match(node, run);
  if (!primitive) buildChildren(node, run);
  return node;
}

/** Records the first rule that matches this node itself, evaluating `where` only when the path matches. */
function match(node: Node, run: Run): void {
  for (const rule of run.ruleSet.rules) {
    if (rule.index >= node.exact) break;
    if (!selects(rule.selector, node)) continue;
    if (rule.where) {
      let result: unknown[];
      try {
        result = rule.where(node.value as object);
      } catch {
        run.suppress(
          node.path,
          node.cls.class,
          `rule ${rule.index} where failed`,
          'withheld: rule condition failed',
        );
        return;
      }
      if (!isTrue(result)) continue;
    }
    node.exact = rule.index;
    return;
  }
}

function selects(selector: Selector, node: Node): boolean {
  const { segs } = node;
  if (selector.kind === 'path') {
    if (selector.root !== '*' && selector.root !== node.rootType) return false;
    if (selector.segments.length !== segs.length) return false;
    return selector.segments.every((s, i) => segmentMatches(s, segs[i]));
  }
  const start = segs.length - selector.segments.length;
  if (start < 0 || node.typeStack[start] !== selector.type) return false;
  return selector.segments.every((s, i) => segmentMatches(s, segs[start + i]));
}

function segmentMatches(segment: string, element: ElementInfo | undefined): boolean {
  if (!element) return false;
  return (
    segment === element.key ||
    segment === element.name ||
    (element.choice && segment === `${element.name}[x]`)
  );
}

interface Out {
  readonly key: string;
  readonly value: Json;
}

function earlier(a: CompiledRule | undefined, b: CompiledRule | undefined): CompiledRule | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.index <= b.index ? a : b;
}

function transform(
  run: Run,
  node: Node,
  inherited: CompiledRule | undefined,
  freeTextOk: boolean,
): Out | undefined {
  if (node.unknown) {
    run.record(node.path, node.cls.class, 'redact', 'not in the R4 model; removed', 'unknown-element', true);
    run.warn('ANON_UNKNOWN_ELEMENT', node.path, 'element not defined by FHIR R4 (or wrong shape); removed');
    return undefined;
  }
  const exact = Number.isFinite(node.exact) ? run.ruleSet.rules[node.exact] : undefined;
  const governing = earlier(inherited, exact);
  const namedHere = governing !== undefined && governing === exact;
  if (node.cls.freeText && !freeTextOk && !namedHere) {
    run.record(node.path, node.cls.class, 'redact', 'free text removed', 'free-text', true);
    return undefined;
  }
  const textOk = freeTextOk || (node.cls.freeText && namedHere);
  if (node.below < (governing?.index ?? Number.POSITIVE_INFINITY))
    return descend(run, node, governing, textOk);
  if (governing) return apply(run, node, governing.spec, governing, textOk);
  const spec = run.ruleSet.defaults[node.cls.class];
  // Whole-node methods build a fresh, minimal value (or none), so applying them at an inherited class never
  // keeps more than the stricter defaults of the parts would.
  if (!node.primitive && !actsOnWhole(spec.method, node.type)) {
    return descend(run, node, undefined, textOk);
  }
  return apply(run, node, spec, undefined, textOk);
}

function descend(
  run: Run,
  node: Node,
  inherited: CompiledRule | undefined,
  freeTextOk: boolean,
): Out | undefined {
  const out: JsonObject = {};
  if (node.isResource) out.resourceType = node.type;
  for (const key of node.companions) {
    run.record(
      `${node.path}.${key}`,
      node.cls.class,
      'redact',
      'primitive extensions removed',
      'primitive-extension',
      true,
    );
  }
  for (const group of node.groups) {
    const results = group.items
      .map((item) => transform(run, item, inherited, freeTextOk))
      .filter((r): r is Out => r !== undefined);
    if (results.length === 0) continue;
    if (group.isArray) out[group.key] = results.map((r) => r.value);
    else out[(results[0] as Out).key] = (results[0] as Out).value;
  }
  const size = Object.keys(out).length - (node.isResource ? 1 : 0);
  if (size === 0 && node.depth > 0) return undefined;
  return { key: node.key, value: out };
}

function basisOf(node: Node, rule: CompiledRule | undefined): string {
  return rule ? `rule ${rule.index} (${rule.path})` : `default ${node.cls.class}`;
}

function apply(
  run: Run,
  node: Node,
  spec: MethodSpec,
  rule: CompiledRule | undefined,
  freeTextOk: boolean,
): Out | undefined {
  const basis = basisOf(node, rule);
  switch (spec.method) {
    case 'keep':
      return node.primitive ? { key: node.key, value: node.value } : descend(run, node, rule, freeTextOk);
    case 'redact':
      run.record(node.path, node.cls.class, 'redact', 'removed', basis, true);
      return undefined;
    case 'suppress':
      run.suppress(node.path, node.cls.class, basis, 'resource withheld');
      return undefined;
    default: {
      const result = runMethod(spec, methodInput(run, node));
      switch (result.kind) {
        case 'replace':
          run.record(node.path, node.cls.class, spec.method, result.summary, basis, false);
          return { key: result.key ?? node.key, value: result.value };
        case 'remove':
          run.record(node.path, node.cls.class, spec.method, result.summary, basis, true);
          if (result.warning && (rule !== undefined || result.warning.code !== 'ANON_METHOD_UNSUPPORTED')) {
            run.warn(result.warning.code, node.path, `${result.warning.message}; removed`);
          }
          return undefined;
        case 'descend':
          return descend(run, node, rule, freeTextOk);
      }
    }
  }
}

function methodInput(run: Run, node: Node): Omit<MethodInput<unknown>, 'params'> {
  const parent = node.parent;
  return {
    value: node.value,
    type: node.type,
    name: node.element?.name ?? node.key,
    choice: node.element?.choice ?? false,
    path: node.path,
    depth: node.depth,
    parent: parent && isJsonObject(parent.value) ? parent.value : {},
    parentType: parent?.type ?? '',
    record: run.scope,
  };
}

/** Adds up audits of many records (same path, method, summary and basis). */
export function mergeAudit(lists: Iterable<readonly AuditEntry[]>): AuditEntry[] {
  const merged = new Map<string, AuditEntry>();
  for (const list of lists) {
    for (const entry of list) {
      const key = `${entry.path}\u001f${entry.method}\u001f${entry.paramsSummary}\u001f${entry.basis}`;
      const found = merged.get(key);
      merged.set(key, found ? { ...found, count: found.count + entry.count } : entry);
    }
  }
  return [...merged.values()];
}

export interface AnonymizedBundle {
  /** A `collection` Bundle of the released resources (bundle-local fullUrls are not carried over). */
  readonly bundle: JsonObject;
  readonly results: readonly AnonymizeResult[];
  readonly audit: readonly AuditEntry[];
  readonly warnings: readonly Issue[];
  readonly released: number;
  readonly withheld: number;
}

/**
 * Anonymizes every entry of a Bundle with one rule set. `urn:uuid:` references are resolved through the
 * bundle's fullUrls first, so they are pseudonymised exactly like literal `Type/id` references.
 */
export function anonymizeBundle(bundle: unknown, ruleSet: RuleSet, ctx: AnonymizeContext): AnonymizedBundle {
  const index = referenceIndex(bundle);
  const scoped: AnonymizeContext = {
    ...ctx,
    references: new Map([...(ctx.references ?? new Map()), ...index]),
  };
  const entries = isJsonObject(bundle) ? asArray(bundle.entry) : [];
  const results: AnonymizeResult[] = [];
  const warnings: Issue[] = [];
  entries.forEach((entry, i) => {
    const result = anonymize(isJsonObject(entry) ? entry.resource : undefined, ruleSet, scoped);
    results.push(result);
    for (const w of result.warnings) warnings.push({ ...w, path: `entry[${i}]:${w.path}` });
  });
  const released = results.flatMap((r) => (r.resource ? [r.resource] : []));
  return {
    bundle: { resourceType: 'Bundle', type: 'collection', entry: released.map((resource) => ({ resource })) },
    results,
    audit: mergeAudit(results.map((r) => r.audit)),
    warnings,
    released: released.length,
    withheld: results.length - released.length,
  };
}
