import { compile } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { SluiceError } from '../../errors/index.ts';
import { loadR4Definitions } from '../../fhir/definitions.ts';
import { isJsonObject, type JsonObject } from '../../fhir/resource.ts';
import { type Issue, issue, warning } from '../../mapping/outcome.ts';
import type { DataClass } from '../classification.ts';
import { classifyPath } from '../classify.ts';
import type { AnonymizeResult, AuditEntry } from '../pipeline.ts';
import type { MethodName } from '../rules.ts';
import type { MsConfig, MsMethod, MsRule } from './config.ts';
import {
  cryptoUniform,
  type MsOperation,
  MsProcessingError,
  MsRuleNotApplicableError,
  type ProcessEnv,
  runProcessor,
} from './processors.ts';
import {
  buildTree,
  descendantsWithoutSubResources,
  MsInputError,
  type MsNode,
  pathOf,
  removeEmpty,
  toJson,
} from './tree.ts';

/**
 * The rule engine of Microsoft's FHIR Tools for Anonymization (AnonymizationVisitor): every resource node
 * of the input (a Bundle's entries and contained resources too, parents first) gets the rules of its type
 * and the general ones (`Resource.…`, `nodesByType(…)`) in config order; a rule processes each matched
 * node and its subtree, and a node processed once is never processed again — so the first rule to reach
 * a node decides it. Nodes left without value are removed, and each resource gets the security labels
 * of what was done to it.
 */

export interface MsAnonymizerOptions {
  /** `dateShiftScope: file|folder`: the file or folder name the upstream tool would use as prefix. */
  readonly dateShiftKeyPrefix?: string;
  /** The day ages over 89 are judged on (upstream: the machine's clock). */
  readonly now?: Date;
  /** Perturbation noise (tests pin it); default: node:crypto. */
  readonly uniform?: (min: number, max: number) => number;
}

const SECURITY_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue';
/** SecurityLabels as upstream writes them; only the first three carry a system there. */
const LABELS: readonly [MsOperation, { system?: string; code: string; display: string }][] = [
  ['redact', { system: SECURITY_SYSTEM, code: 'REDACTED', display: 'redacted' }],
  ['abstract', { system: SECURITY_SYSTEM, code: 'ABSTRED', display: 'abstracted' }],
  ['cryptoHash', { system: SECURITY_SYSTEM, code: 'CRYTOHASH', display: 'cryptographic hash function' }],
  ['encrypt', { code: 'ENCRYPT', display: 'exact value is transformed into ciphertext' }],
  ['perturb', { code: 'PERTURBED', display: 'exact value is replaced with another exact value' }],
  ['substitute', { code: 'SUBSTITUTED', display: 'exact value is replaced with a predefined value' }],
  ['generalize', { code: 'GENERALIZED', display: 'exact value is replaced with a general value' }],
];

/** Sluice's audit vocabulary for each upstream method (the summary names the upstream method exactly). */
const AUDIT_METHOD: Readonly<Record<MsMethod, MethodName>> = {
  keep: 'keep',
  redact: 'redact',
  dateshift: 'dateshift',
  cryptohash: 'hash',
  encrypt: 'tokenize',
  substitute: 'generalize',
  perturb: 'perturb',
  generalize: 'generalize',
};

type FhirPathFn = (resource: object) => unknown[];

interface ResourceNodeLike {
  readonly parentResNode: ResourceNodeLike | null;
  readonly propName: string | null;
  readonly index: number | null;
  readonly data: unknown;
}

interface Evaluation {
  readonly json: JsonObject;
  readonly root: MsNode;
}

export class MsAnonymizer {
  readonly config: MsConfig;
  readonly #options: MsAnonymizerOptions;
  readonly #compiled = new Map<string, FhirPathFn>();
  #current: Evaluation | undefined;
  readonly #descendants: FhirPathFn;

  constructor(config: MsConfig, options: MsAnonymizerOptions = {}) {
    loadR4Definitions();
    this.config = config;
    this.#options = options;
    this.#descendants = this.#compile('descendants()');
  }

  /** Anonymizes one resource (a Bundle as a whole, as upstream does with a JSON file). */
  anonymize(resource: unknown): AnonymizeResult {
    if (!isJsonObject(resource) || typeof resource.resourceType !== 'string') {
      return {
        resource: null,
        audit: [],
        warnings: [issue('REC_UNPARSEABLE', '', 'not a FHIR resource object')],
      };
    }
    let root: MsNode;
    try {
      root = buildTree(resource);
    } catch (err) {
      if (!(err instanceof MsInputError)) throw err;
      return { resource: null, audit: [], warnings: [issue('REC_INVALID_FHIR', '', err.message)] };
    }
    const run = new Run(this, root);
    try {
      run.visit(root);
    } catch (err) {
      if (err instanceof MsRuleNotApplicableError) {
        throw new SluiceError('ANON_MS_RULE_NOT_APPLICABLE', `${this.config.source}: ${err.message}.`, {
          cause: err,
          details: { source: this.config.source },
        });
      }
      if (!(err instanceof MsProcessingError)) throw err;
      if (this.config.processingErrors === 'skip') {
        const empty: JsonObject = {
          resourceType: resource.resourceType,
          meta: { security: [{ system: SECURITY_SYSTEM, code: 'REDACTED', display: 'redacted' }] },
        };
        return {
          resource: empty,
          audit: [],
          warnings: [warning('ANON_MS_PROCESSING_FAILED', resource.resourceType, `${err.message}; skipped`)],
        };
      }
      throw new SluiceError('ANON_MS_PROCESSING_FAILED', `${this.config.source}: ${err.message}.`, {
        cause: err,
        details: { source: this.config.source, resourceType: resource.resourceType },
      });
    }
    removeEmpty(root);
    return { resource: toJson(root, false), audit: run.audit(), warnings: [] };
  }

  /** The options a run was created with. */
  get options(): MsAnonymizerOptions {
    return this.#options;
  }

  /** Evaluates a rule's FHIRPath on a resource node and maps the results back to tree nodes. */
  evaluate(expression: string, resourceNode: MsNode, json: JsonObject): MsNode[] {
    const fn = this.#compile(expression);
    const previous = this.#current;
    this.#current = { json, root: resourceNode };
    try {
      return this.#locateAll(fn(json), json, resourceNode);
    } finally {
      this.#current = previous;
    }
  }

  /** A generalize expression with `$this` = the node (navigated from its resource, so types are known). */
  evaluateOn(node: MsNode, resourceNode: MsNode, json: JsonObject, expression: string): unknown[] {
    const nav = navigationOf(node, resourceNode);
    const fn = this.#compileResolved(`${nav}.select(${expression})`);
    return fn(json);
  }

  #compile(expression: string): FhirPathFn {
    let fn = this.#compiled.get(expression);
    if (!fn) {
      const table = {
        nodesByType: {
          fn: (inputs: unknown[], t: string) => this.#nodesBy(inputs, 'type', t),
          arity: { 1: ['String'] },
        },
        nodesByName: {
          fn: (inputs: unknown[], n: string) => this.#nodesBy(inputs, 'name', n),
          arity: { 1: ['String'] },
        },
      };
      const compiled = compile(expression, r4, {
        async: false,
        resolveInternalTypes: false,
        userInvocationTable: table,
      } as never) as unknown as FhirPathFn;
      fn = compiled;
      this.#compiled.set(expression, fn);
    }
    return fn;
  }

  #compileResolved(expression: string): FhirPathFn {
    const key = `\u0000${expression}`;
    let fn = this.#compiled.get(key);
    if (!fn) {
      fn = compile(expression, r4, { async: false } as never) as unknown as FhirPathFn;
      this.#compiled.set(key, fn);
    }
    return fn;
  }

  /** The `nodesByType` / `nodesByName` FHIRPath functions upstream registers, inside any expression. */
  #nodesBy(inputs: unknown[], by: 'type' | 'name', key: string): unknown[] {
    const current = this.#current;
    if (!current) return [];
    const out: unknown[] = [];
    for (const input of inputs) {
      // The expression's context arrives as the resource JSON itself, anything below as a ResourceNode.
      const start =
        input === current.json
          ? current.root
          : isResourceNode(input)
            ? locate(input, current.json, current.root)
            : undefined;
      if (!start) continue;
      const wanted = new Set(
        [...descendantsWithoutSubResources(start)].filter((n) => (by === 'type' ? n.type : n.name) === key),
      );
      if (wanted.has(start)) out.push(input);
      for (const candidate of this.#descendants(input as object)) {
        if (!isResourceNode(candidate)) continue;
        const node = locate(candidate, current.json, current.root);
        if (node && wanted.has(node)) out.push(candidate);
      }
    }
    return out;
  }

  #locateAll(results: unknown[], json: JsonObject, root: MsNode): MsNode[] {
    const out: MsNode[] = [];
    const seen = new Set<MsNode>();
    for (const r of results) {
      if (!isResourceNode(r)) continue;
      const node = locate(r, json, root);
      if (node && !seen.has(node)) {
        seen.add(node);
        out.push(node);
      }
    }
    return out;
  }
}

function isResourceNode(value: unknown): value is ResourceNodeLike {
  return typeof value === 'object' && value !== null && 'parentResNode' in value && 'propName' in value;
}

/** Follows a FHIRPath result's parent chain from the evaluated JSON down the tree (by name and position). */
function locate(rn: ResourceNodeLike, json: JsonObject, root: MsNode): MsNode | undefined {
  const chain: ResourceNodeLike[] = [];
  let current: ResourceNodeLike | null = rn;
  while (current?.parentResNode) {
    chain.push(current);
    current = current.parentResNode;
  }
  if (!current || current.data !== json) return undefined;
  let node = root;
  for (const step of chain.reverse()) {
    const candidates = node.children.filter((c) => c.name === step.propName || c.key === step.propName);
    const next = candidates[step.index ?? 0];
    if (!next) return undefined;
    node = next;
  }
  return node;
}

/** `name[0].given[1]`: the FHIRPath navigation from a resource to one of its nodes. */
function navigationOf(node: MsNode, resourceNode: MsNode): string {
  const steps: string[] = [];
  let current: MsNode = node;
  while (current !== resourceNode && current.parent) {
    const parent: MsNode = current.parent;
    const same = parent.children.filter((c) => c.name === current.name);
    steps.push(`${current.name}[${same.indexOf(current)}]`);
    current = parent;
  }
  return steps.reverse().join('.') || '$this';
}

/** One `anonymize` call: the visited set, per-resource results and the audit. */
class Run {
  readonly #engine: MsAnonymizer;
  readonly #visited = new Set<MsNode>();
  readonly #stack: Set<MsOperation>[] = [];
  readonly #audit = new Map<string, AuditEntry>();
  readonly #root: MsNode;
  #version = 0;

  constructor(engine: MsAnonymizer, root: MsNode) {
    this.#engine = engine;
    this.#root = root;
  }

  visit(node: MsNode): void {
    if (node.isResource) this.#stack.push(this.#processResource(node));
    for (const child of [...node.children]) this.visit(child);
    if (node.isResource) {
      const ops = this.#stack.pop() ?? new Set<MsOperation>();
      const parent = this.#stack[this.#stack.length - 1];
      if (parent) for (const op of ops) parent.add(op);
      if (node.name !== 'contained' || node === this.#root) addSecurityTags(node, ops);
    }
  }

  #processResource(resource: MsNode): Set<MsOperation> {
    const ops = new Set<MsOperation>();
    const byType = new Map<string, MsNode[]>();
    const byName = new Map<string, MsNode[]>();
    for (const n of cacheNodes(resource)) {
      push(byType, n.type, n);
      push(byName, n.name, n);
    }
    let json: JsonObject | undefined;
    let jsonVersion = -1;
    const jsonOf = (): JsonObject => {
      if (!json || jsonVersion !== this.#version) {
        json = toJson(resource, true);
        jsonVersion = this.#version;
      }
      return json;
    };
    const config = this.#engine.config;
    for (const rule of config.rules) {
      if (!appliesTo(rule, resource.type)) continue;
      let matches: MsNode[];
      if (rule.lookup) {
        const found = (rule.lookup.by === 'type' ? byType : byName).get(rule.lookup.key) ?? [];
        const child = rule.lookup.child;
        matches =
          child === undefined ? found : found.flatMap((n) => n.children.filter((c) => c.name === child));
      } else if (rule.isResourceTypeRule) {
        matches = [resource];
      } else {
        matches = this.#engine.evaluate(rule.expression, resource, jsonOf());
      }
      const env = this.#env(resource, jsonOf);
      for (const match of matches) this.#processRecursive(match, rule, env, ops);
    }
    return ops;
  }

  #env(resource: MsNode, jsonOf: () => JsonObject): ProcessEnv {
    const options = this.#engine.options;
    const config = this.#engine.config;
    return {
      params: config.parameters,
      dateShiftKeyPrefix:
        config.parameters.dateShiftScope === 'resource' ? '' : (options.dateShiftKeyPrefix ?? ''),
      now: options.now ?? new Date(),
      visited: this.#visited,
      evaluateOn: (node, expression) => this.#engine.evaluateOn(node, resource, jsonOf(), expression),
      uniform: options.uniform ?? cryptoUniform,
      changed: () => {
        this.#version++;
      },
    };
  }

  #processRecursive(node: MsNode, rule: MsRule, env: ProcessEnv, ops: Set<MsOperation>): void {
    if (this.#visited.has(node)) return;
    const done = runProcessor(rule.method, node, rule.settings, env);
    this.#visited.add(node);
    for (const op of done) {
      ops.add(op);
      this.#record(node, rule, op);
    }
    for (const child of [...node.children]) {
      if (child.isResource) continue;
      this.#processRecursive(child, rule, env, ops);
    }
  }

  #record(node: MsNode, rule: MsRule, op: MsOperation): void {
    const path = pathOf(node);
    const key = `${path}\u001f${rule.index}\u001f${op}`;
    const found = this.#audit.get(key);
    if (found) {
      this.#audit.set(key, { ...found, count: found.count + 1 });
      return;
    }
    const cls: DataClass = classifyPath(path)?.class ?? 'other';
    this.#audit.set(key, {
      path,
      class: cls,
      method: op === 'abstract' ? 'generalize' : AUDIT_METHOD[rule.method],
      paramsSummary: `ms ${rule.method}: ${op}`,
      basis: `ms rule ${rule.index} (${rule.path})`,
      count: 1,
    });
  }

  audit(): AuditEntry[] {
    return [...this.#audit.values()];
  }
}

function push(map: Map<string, MsNode[]>, key: string, node: MsNode): void {
  const list = map.get(key);
  if (list) list.push(node);
  else map.set(key, [node]);
}

/** InitializeNodeCache: all descendants, nested resource nodes included but not their insides. */
function* cacheNodes(node: MsNode): Generator<MsNode> {
  for (const child of node.children) {
    yield child;
    if (!child.isResource) yield* cacheNodes(child);
  }
}

function appliesTo(rule: MsRule, type: string): boolean {
  return (
    rule.resourceType === type ||
    rule.resourceType === '' ||
    rule.resourceType === 'Resource' ||
    rule.resourceType === 'DomainResource'
  );
}

/** AddSecurityTag: one label per kind of operation done in the resource (and the resources inside it). */
function addSecurityTags(resource: MsNode, ops: ReadonlySet<MsOperation>): void {
  if (ops.size === 0) return;
  let meta = resource.children.find((c) => c.name === 'meta');
  const wanted = LABELS.filter(([op]) => ops.has(op)).map(([, label]) => label);
  if (!meta) {
    meta = {
      name: 'meta',
      key: 'meta',
      type: 'Meta',
      value: null,
      children: [],
      parent: resource,
      isResource: false,
      primitive: false,
      inArray: false,
    };
    resource.children.push(meta);
  }
  const existing = new Set(
    meta.children
      .filter((c) => c.name === 'security')
      .map((c) => String(c.children.find((x) => x.name === 'code')?.value ?? '').toLowerCase()),
  );
  for (const label of wanted) {
    if (existing.has(label.code.toLowerCase())) continue;
    const coding: MsNode = {
      name: 'security',
      key: 'security',
      type: 'Coding',
      value: null,
      children: [],
      parent: meta,
      isResource: false,
      primitive: false,
      inArray: true,
    };
    const prim = (name: string, value: string, type: string): MsNode => ({
      name,
      key: name,
      type,
      value,
      children: [],
      parent: coding,
      isResource: false,
      primitive: true,
      inArray: false,
    });
    if (label.system) coding.children.push(prim('system', label.system, 'uri'));
    coding.children.push(prim('code', label.code, 'code'), prim('display', label.display, 'string'));
    meta.children.push(coding);
  }
}

export type { Issue };
