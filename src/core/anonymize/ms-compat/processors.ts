import { randomInt } from 'node:crypto';
import type { JsonObject } from '../../fhir/resource.ts';
import {
  cryptoHash,
  type DateKind,
  encryptToBase64,
  partialZip,
  redactAge,
  redactDate,
  roundHalfEven,
  shiftDate,
  dateShiftOffset as shiftOffset,
  transformReferenceId,
} from './algorithms.ts';
import type { MsMethod, MsParameters } from './config.ts';
import { buildSubtree, descendantsWithoutSubResources, type MsNode, rootOf } from './tree.ts';

/**
 * The processors of upstream's engine, one per method, acting on one node (the engine walks the subtree).
 * Each returns the operations it performed (upstream's ProcessResult records), from which the security
 * labels and the audit are made.
 */

export type MsOperation =
  | 'redact'
  | 'abstract'
  | 'cryptoHash'
  | 'encrypt'
  | 'perturb'
  | 'substitute'
  | 'generalize';

/** A failure upstream raises as AnonymizerProcessingException (honours `processingErrors: skip`). */
export class MsProcessingError extends Error {}
/** Upstream's AnonymizerRuleNotApplicableException: a configuration problem, always raised. */
export class MsRuleNotApplicableError extends Error {}

export interface ProcessEnv {
  readonly params: MsParameters;
  /** The date-shift prefix for file or folder scope; '' for resource scope. */
  readonly dateShiftKeyPrefix: string;
  readonly now: Date;
  readonly visited: Set<MsNode>;
  /** Evaluates a generalize expression with the node as `$this`. */
  readonly evaluateOn: (node: MsNode, expression: string) => unknown[];
  /** Uniform sample in [min, max] (perturb noise). */
  readonly uniform: (min: number, max: number) => number;
  readonly changed: () => void;
}

type Settings = Readonly<Record<string, unknown>>;

const PRIMITIVE_NUMBER_TYPES = new Set(['decimal', 'integer', 'positiveInt', 'unsignedInt']);
const INTEGER_TYPES = new Set(['integer', 'positiveInt', 'unsignedInt']);
const QUANTITY_TYPES = new Set([
  'Age',
  'Count',
  'Duration',
  'Distance',
  'Money',
  'MoneyQuantity',
  'Quantity',
  'SimpleQuantity',
]);

/** .NET `object.ToString()` of a primitive value, which upstream hashes and encrypts. */
export function valueText(value: MsNode['value']): string {
  if (value === null) return '';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return String(value);
}

export function runProcessor(
  method: MsMethod,
  node: MsNode,
  settings: Settings,
  env: ProcessEnv,
): MsOperation[] {
  switch (method) {
    case 'keep':
      return [];
    case 'redact':
      return redact(node, env);
    case 'dateshift':
      return dateShift(node, env);
    case 'cryptohash':
      return hash(node, env);
    case 'encrypt':
      return encrypt(node, env);
    case 'substitute':
      return substitute(node, settings, env);
    case 'perturb':
      return perturb(node, settings, env);
    case 'generalize':
      return generalize(node, settings, env);
  }
}

function empty(node: MsNode): boolean {
  return valueText(node.value) === '';
}

function dateKind(node: MsNode): DateKind | undefined {
  const t = node.type.toLowerCase();
  if (t === 'date') return 'date';
  if (t === 'datetime') return 'dateTime';
  if (t === 'instant') return 'instant';
  return undefined;
}

function set(node: MsNode, value: MsNode['value'], env: ProcessEnv): void {
  if (node.value !== value) env.changed();
  node.value = value;
}

function redact(node: MsNode, env: ProcessEnv): MsOperation[] {
  if (empty(node)) return [];
  const p = env.params;
  const kind = dateKind(node);
  if (kind) {
    set(node, redactDate(valueText(node.value), kind, p.enablePartialDatesForRedact, env.now), env);
    return ['redact'];
  }
  if (node.parent?.type.toLowerCase() === 'age' && node.type.toLowerCase() === 'decimal') {
    let kept: string | null;
    try {
      kept = redactAge(valueText(node.value), p.enablePartialAgesForRedact);
    } catch {
      throw new MsProcessingError('age value is not a whole number');
    }
    set(node, kept === null ? null : node.value, env);
    return ['redact'];
  }
  if (node.name.toLowerCase() === 'postalcode') {
    if (p.enablePartialZipCodesForRedact) {
      set(node, partialZip(valueText(node.value), p.restrictedZipCodeTabulationAreas), env);
      return ['abstract'];
    }
    set(node, null, env);
    return ['redact'];
  }
  set(node, null, env);
  return ['redact'];
}

function dateShift(node: MsNode, env: ProcessEnv): MsOperation[] {
  if (empty(node)) return [];
  const kind = dateKind(node);
  if (!kind) return [];
  const p = env.params;
  const offset = (): number => {
    if (p.dateShiftFixedOffsetInDays !== undefined) return p.dateShiftFixedOffsetInDays;
    const prefix = env.dateShiftKeyPrefix || resourceIdOf(node);
    return shiftOffset(prefix, p.dateShiftKey);
  };
  const result = shiftDate(valueText(node.value), kind, offset, p.enablePartialDatesForRedact, env.now);
  set(node, result.value, env);
  return [result.kind === 'shifted' ? 'perturb' : 'redact'];
}

/** `TryGetResourceId`: the id of the tree's root as it is now (already hashed when a rule hashed it). */
function resourceIdOf(node: MsNode): string {
  const root = rootOf(node);
  const id = root.children.find((c) => c.name === 'id');
  return id ? valueText(id.value) : '';
}

function hash(node: MsNode, env: ProcessEnv): MsOperation[] {
  if (empty(node)) return [];
  const input = valueText(node.value);
  const key = env.params.cryptoHashKey;
  const isReference =
    node.parent?.type.toLowerCase() === 'reference' && node.name.toLowerCase() === 'reference';
  set(
    node,
    isReference ? transformReferenceId(input, (id) => cryptoHash(id, key)) : cryptoHash(input, key),
    env,
  );
  return ['cryptoHash'];
}

function encrypt(node: MsNode, env: ProcessEnv): MsOperation[] {
  if (empty(node)) return [];
  set(node, encryptToBase64(valueText(node.value), env.params.encryptKey), env);
  return ['encrypt'];
}

function perturb(node: MsNode, settings: Settings, env: ProcessEnv): MsOperation[] {
  let valueNode: MsNode | undefined;
  if (PRIMITIVE_NUMBER_TYPES.has(node.type)) valueNode = node;
  else if (QUANTITY_TYPES.has(node.type)) valueNode = node.children.find((c) => c.name === 'value');
  if (!valueNode || valueNode.value === null || env.visited.has(valueNode)) return [];
  let roundTo = 'roundTo' in settings ? Number(settings.roundTo) : 2;
  const span0 = 'span' in settings ? Number(settings.span) : 0;
  const proportional =
    typeof settings.rangeType === 'string' && settings.rangeType.toLowerCase() === 'proportional';
  if (INTEGER_TYPES.has(valueNode.type)) roundTo = 0;
  const origin = Number(valueText(valueNode.value));
  if (!Number.isFinite(origin)) throw new MsProcessingError('perturb: the value is not a number');
  const span = proportional ? origin * span0 : span0;
  const noise = env.uniform(-span / 2, span / 2);
  let perturbed = roundHalfEven(origin + noise, roundTo);
  if (perturbed <= 0 && valueNode.type === 'positiveInt') perturbed = 1;
  if (perturbed < 0 && valueNode.type === 'unsignedInt') perturbed = 0;
  set(valueNode, perturbed, env);
  for (const d of descendantsWithoutSubResources(node, false)) env.visited.add(d);
  return ['perturb'];
}

function generalize(node: MsNode, settings: Settings, env: ProcessEnv): MsOperation[] {
  if (!node.primitive) {
    throw new MsRuleNotApplicableError(
      `generalize does not apply to ${node.type}; only primitive elements can be generalized`,
    );
  }
  if (node.value === null) return [];
  const cases = (settings.cases ?? {}) as Record<string, string>;
  for (const [condition, replacement] of Object.entries(cases)) {
    let hit: boolean;
    try {
      const result = env.evaluateOn(node, condition);
      hit = result.length === 1 && result[0] === true;
      if (hit) {
        const value = env.evaluateOn(node, replacement)[0];
        const scalar =
          value === undefined || value === null
            ? null
            : typeof value === 'object'
              ? String(value)
              : (value as string | number | boolean);
        set(node, scalar, env);
        return ['generalize'];
      }
    } catch (err) {
      if (err instanceof MsRuleNotApplicableError) throw err;
      throw new MsProcessingError('generalize: a case expression failed');
    }
  }
  const other = typeof settings.otherValues === 'string' ? settings.otherValues.toLowerCase() : 'redact';
  if (other !== 'keep') set(node, null, env);
  return ['generalize'];
}

/**
 * SubstituteProcessor: the node takes the value (primitive) or JSON fragment (complex) of `replaceWith`;
 * children already processed by earlier rules, and the ancestors of such children, are kept.
 */
function substitute(node: MsNode, settings: Settings, env: ProcessEnv): MsOperation[] {
  const replaceWith = settings.replaceWith;
  let replacement: MsNode;
  if (node.primitive) {
    const text =
      replaceWith === null || replaceWith === undefined
        ? null
        : typeof replaceWith === 'string'
          ? replaceWith
          : JSON.stringify(replaceWith);
    replacement = dummy(text);
  } else {
    let fragment: unknown = replaceWith ?? {};
    if (typeof fragment === 'string') {
      try {
        fragment = JSON.parse(fragment);
      } catch {
        throw new MsProcessingError('substitute: replaceWith is not a JSON object');
      }
    }
    if (typeof fragment !== 'object' || fragment === null || Array.isArray(fragment)) {
      throw new MsProcessingError('substitute: replaceWith is not a JSON object');
    }
    try {
      replacement = buildSubtree(fragment as JsonObject, node.type);
    } catch {
      throw new MsProcessingError(`substitute: replaceWith is not a valid ${node.type}`);
    }
  }
  const keep = new Set<MsNode>();
  markKeep(node, env.visited, keep);
  const ops = substituteNode(node, replacement, env, keep);
  markVisited(node, env.visited);
  env.changed();
  return ops;
}

function dummy(value: string | null): MsNode {
  return {
    name: '',
    key: '',
    type: 'string',
    value,
    children: [],
    parent: undefined,
    isResource: false,
    primitive: true,
    inArray: false,
  };
}

function markKeep(node: MsNode, visited: Set<MsNode>, keep: Set<MsNode>): boolean {
  let should = false;
  for (const child of node.children) should = markKeep(child, visited, keep) || should;
  if (should || visited.has(node)) {
    keep.add(node);
    return true;
  }
  return should;
}

function markVisited(node: MsNode, visited: Set<MsNode>): void {
  visited.add(node);
  for (const child of node.children) markVisited(child, visited);
}

function substituteNode(
  node: MsNode,
  replacement: MsNode,
  env: ProcessEnv,
  keep: Set<MsNode>,
): MsOperation[] {
  if (env.visited.has(node)) return [];
  const names = new Set(replacement.children.map((c) => c.name));
  for (const name of names) {
    const children = node.children.filter((c) => c.name === name);
    const targets = replacement.children.filter((c) => c.name === name);
    let i = 0;
    for (const child of children) {
      if (env.visited.has(child)) {
        i++;
      } else if (i < targets.length) {
        const target = targets[i++] as MsNode;
        // A choice element may change type with its replacement (valueString → valueInteger).
        if (child.primitive === target.primitive) {
          child.type = target.type;
          child.key = target.key;
        }
        substituteNode(child, target, env, keep);
      } else if (keep.has(child)) {
        substituteNode(child, dummy(null), env, keep);
      } else {
        node.children = node.children.filter((c) => c !== child);
      }
    }
    while (i < targets.length) {
      const extra = cloneInto(targets[i++] as MsNode, node);
      node.children.push(extra);
    }
  }
  for (const child of node.children.filter((c) => !names.has(c.name))) {
    if (env.visited.has(child)) continue;
    if (keep.has(child)) substituteNode(child, dummy(null), env, keep);
    else node.children = node.children.filter((c) => c !== child);
  }
  node.value = replacement.value;
  return ['substitute'];
}

function cloneInto(source: MsNode, parent: MsNode): MsNode {
  const copy: MsNode = { ...source, parent, children: [] };
  copy.children = source.children.map((c) => cloneInto(c, copy));
  return copy;
}

/** A uniform sample from node:crypto (perturbation noise need not be reproducible; upstream's is not). */
export function cryptoUniform(min: number, max: number): number {
  if (max <= min) return min;
  const unit = randomInt(0, 2 ** 48 - 1) / (2 ** 48 - 1);
  return min + unit * (max - min);
}
