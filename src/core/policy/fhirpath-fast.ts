import { parse } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';

/**
 * The fast path. It mirrors fhirpath.js 5.x (src/fhirpath.js, utilities.js, deep-equal.js) for a subset:
 *
 *   member navigation (R4 model aware: choice types, contentReference paths, resources nested in data),
 *   $this, string and boolean literals, `{}`, parentheses, `=`, `!=`, `and`, `or`, `+` (strings),
 *   where(), select(), exists([criteria]), empty(), not(), count(), first(), last(), tail(),
 *   iif(criterion, true-result [, otherwise-result]), startsWith(), endsWith(), join([separator]).
 *
 * Items are `Item`s: a `Node` for data reached by navigation (fhirpath's ResourceNode: the value and its
 * model path), or a plain value made by a literal or a function (booleans, strings, numbers, the root when
 * it is not a resource). Whenever fhirpath.js would do something the closures do not model exactly — type
 * conversions of dates and quantities, decimal equality, object equality, errors such as a collection
 * where a singleton is expected, primitive extensions (`_given`), nulls inside arrays — the closures throw
 * BAIL and the caller evaluates the expression with fhirpath.js.
 */

/** Thrown by a fast closure for an input it cannot answer with certainty: fhirpath.js takes over. */
export const BAIL: unique symbol = Symbol('fhirpath fast path bail');

function bail(): never {
  throw BAIL;
}

class Node {
  readonly d: unknown;
  /** fhirpath's ResourceNode.path: the model path or type name (e.g. `Patient`, `HumanName`, `dateTime`). */
  readonly p: string | null;
  constructor(d: unknown, p: string | null) {
    this.d = d;
    this.p = p;
  }
}

type Item = unknown;
type Coll = readonly Item[];
/** Evaluates a node on the input collection; `self` is `$this` (or the root collection at the top). */
type Eval = (data: Coll, self: Coll) => Coll;

interface AstNode {
  readonly type: string;
  readonly text?: string;
  readonly atRoot?: number;
  readonly children?: readonly AstNode[];
}

const EMPTY: Coll = Object.freeze([]);
const TRUE: Coll = Object.freeze([true]);
const FALSE: Coll = Object.freeze([false]);
const bool = (b: boolean): Coll => (b ? TRUE : FALSE);

/** Paths whose values fhirpath.js converts to FP_Date/FP_DateTime/FP_Instant/FP_Time before comparing. */
const DATE_PATHS = new Set(['date', 'dateTime', 'instant', 'time']);

/**
 * Names that a root-level member can match as a type (fhirpath.js returns the root itself for
 * `Resource.id`, `DomainResource.text`, `Object` on a plain object): every supertype in the model and the
 * System type of a plain object. A root's own resourceType is handled like fhirpath's legacy check.
 */
const ROOT_TYPE_NAMES = new Set<string>([...Object.values(r4.type2Parent), 'Object']);

function valData(item: Item): unknown {
  return item instanceof Node ? item.d : item;
}

/**
 * The fast closures of an expression, or why it is outside the subset (a string). A closure throws
 * `BAIL` for an input it cannot answer with certainty.
 */
export function compileFast(expression: string): ((resource: object) => unknown[]) | string {
  let root: Eval;
  try {
    root = compileNode(parse(expression) as AstNode);
  } catch (err) {
    if (err instanceof Unsupported) return err.message;
    throw err;
  }
  return (resource: object) => {
    if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) bail();
    // fhirpath.js types a root that carries `__path__` (an object it returned before) by that path.
    if ('__path__' in resource) bail();
    const rt = (resource as { resourceType?: unknown }).resourceType;
    let item: Item = resource;
    if (rt) item = typeof rt === 'string' ? new Node(resource, rt) : bail();
    const top = [item];
    const result = root(top, top);
    const out: unknown[] = [];
    for (const r of result) {
      const v = valData(r);
      if (v !== null && v !== undefined) out.push(v);
    }
    return out;
  };
}

class Unsupported extends Error {}

function unsupported(why: string): never {
  throw new Unsupported(why);
}

function kids(node: AstNode): readonly AstNode[] {
  return node.children ?? [];
}

function only(node: AstNode): AstNode {
  const c = kids(node);
  if (c.length !== 1) unsupported(`${node.type} with ${c.length} children`);
  return c[0] as AstNode;
}

function compileNode(node: AstNode): Eval {
  switch (node.type) {
    case 'EntireExpression':
    case 'TermExpression':
    case 'InvocationTerm':
    case 'ParenthesizedTerm':
      return compileNode(only(node));
    case 'LiteralTerm':
      return compileLiteral(only(node));
    case 'InvocationExpression': {
      const steps = kids(node).map(compileNode);
      if (steps.length === 0) unsupported('empty InvocationExpression');
      if (steps.length === 2) {
        const [a, b] = steps as [Eval, Eval];
        return (data, self) => b(a(data, self), self);
      }
      return (data, self) => steps.reduce((acc, step) => step(acc, self), data);
    }
    case 'MemberInvocation':
      return compileMember(node);
    case 'ThisInvocation':
      return (_data, self) => self;
    case 'FunctionInvocation':
      return compileFunction(only(node));
    case 'EqualityExpression':
      return compileEquality(node);
    case 'AndExpression':
    case 'OrExpression':
      return compileLogic(node);
    case 'AdditiveExpression':
      return compilePlus(node);
    default:
      return unsupported(`${node.type}${node.text ? ` ${node.text}` : ''}`);
  }
}

function compileLiteral(node: AstNode): Eval {
  switch (node.type) {
    case 'StringLiteral': {
      const text = node.text ?? '';
      if (text.length < 2 || !text.startsWith("'") || !text.endsWith("'") || text.includes('\\'))
        unsupported(`string literal ${text}`);
      const value: Coll = Object.freeze([text.slice(1, -1)]);
      return () => value;
    }
    case 'BooleanLiteral': {
      const value = bool(node.text === 'true');
      return () => value;
    }
    case 'NullLiteral':
      return () => EMPTY;
    default:
      return unsupported(node.type);
  }
}

function identifier(node: AstNode): string {
  if (node.type !== 'Identifier') unsupported(node.type);
  const name = node.text ?? '';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) unsupported(`identifier ${name}`);
  return name;
}

/** Where a member's value lives on a parent at a given model path (fhirpath's makeChildResNodes). */
interface Slot {
  readonly field: string;
  readonly under: string;
  /** The child path (after path2TypeWithoutElements), or null under a parent without one. */
  readonly path: string | null;
}

function slotsFor(parentPath: string, key: string): readonly Slot[] {
  let childPath = `${parentPath}.${key}`;
  childPath = r4.pathsDefinedElsewhere[childPath] || childPath;
  const finish = (p: string) => r4.path2TypeWithoutElements[p] || p;
  const actualTypes = r4.choiceTypePaths[childPath];
  if (actualTypes) {
    return actualTypes.map((t) => ({ field: key + t, under: `_${key}${t}`, path: finish(childPath + t) }));
  }
  return [{ field: key, under: `_${key}`, path: finish(key === 'extension' ? 'Extension' : childPath) }];
}

function compileMember(node: AstNode): Eval {
  const key = identifier(only(node));
  if (key.startsWith('_')) unsupported(`primitive extension member ${key}`);
  if (key in Object.prototype) unsupported(`member ${key} shadows Object.prototype`);
  if (node.atRoot && ROOT_TYPE_NAMES.has(key)) unsupported(`type name ${key} at the root`);
  const plain: readonly Slot[] = [{ field: key, under: `_${key}`, path: null }];
  const byPath = new Map<string, readonly Slot[]>();

  function push(out: Item[], value: unknown, path: string | null): void {
    if (typeof value === 'object') {
      if (value === null) bail();
      // fhirpath's ResourceNode: a resource inside the data (contained, Bundle.entry.resource) is typed anew.
      const rt = (value as { resourceType?: unknown }).resourceType;
      if (rt) {
        if (typeof rt !== 'string') bail();
        out.push(new Node(value, rt));
        return;
      }
    } else if (value === undefined) bail();
    out.push(new Node(value, path));
  }

  function collect(out: Item[], obj: Record<string, unknown>, slot: Slot): boolean {
    const value = obj[slot.field];
    if (obj[slot.under] !== undefined) bail();
    if (value === undefined) return false;
    if (value !== null) {
      if (Array.isArray(value)) for (let i = 0; i < value.length; i++) push(out, value[i], slot.path);
      else push(out, value, slot.path);
    }
    return true;
  }

  return (data) => {
    const out: Item[] = [];
    let lastPath: string | undefined;
    let lastSlots = plain;
    for (let i = 0; i < data.length; i++) {
      const item = data[i];
      let d: unknown;
      let p: string | null;
      if (item instanceof Node) {
        d = item.d;
        p = item.p;
      } else {
        d = item;
        p = null;
      }
      if (d === null || d === undefined) continue;
      if (typeof d !== 'object') {
        // fhirpath.js reads the property off the primitive (`'abc'.length`); numbers are FP_Decimal objects.
        if (typeof d === 'string' || typeof d === 'boolean') {
          if ((d as unknown as Record<string, unknown>)[key] !== undefined) bail();
          continue;
        }
        bail();
      }
      if (Array.isArray(d)) bail();
      const obj = d as Record<string, unknown>;
      // fhirpath's legacy check: a member named like the item's resourceType returns the item itself.
      if (obj.resourceType === key) {
        out.push(item instanceof Node ? item : new Node(obj, null));
        continue;
      }
      let slots = plain;
      if (p !== null) {
        if (p !== lastPath) {
          let s = byPath.get(p);
          if (s === undefined) {
            s = slotsFor(p, key);
            byPath.set(p, s);
          }
          lastPath = p;
          lastSlots = s;
        }
        slots = lastSlots;
      }
      if (slots.length === 1) collect(out, obj, slots[0] as Slot);
      else for (const slot of slots) if (collect(out, obj, slot)) break;
    }
    return out;
  };
}

function params(fn: AstNode): readonly AstNode[] {
  const c = kids(fn);
  const list = c[1];
  if (c.length > 2 || (list !== undefined && list.type !== 'ParamList')) unsupported('function shape');
  return list ? kids(list) : [];
}

/** misc.singleton(coll, 'String'), or undefined for empty. */
function singletonString(coll: Coll): string | undefined {
  if (coll.length > 1) bail();
  if (coll.length === 0) return undefined;
  const v = valData(coll[0]);
  if (v === null || v === undefined) return undefined;
  return typeof v === 'string' ? v : bail();
}

/** misc.singleton(coll, 'Boolean'), or undefined for empty. */
function singletonBoolean(coll: Coll): boolean | undefined {
  if (coll.length > 1) bail();
  if (coll.length === 0) return undefined;
  const v = valData(coll[0]);
  if (v === null || v === undefined) return undefined;
  return typeof v === 'boolean' ? v : true;
}

/** The functions of the subset and the argument counts fhirpath.js accepts for them. */
const FUNCTIONS: Readonly<Record<string, readonly number[]>> = {
  where: [1],
  select: [1],
  exists: [0, 1],
  empty: [0],
  not: [0],
  count: [0],
  first: [0],
  last: [0],
  tail: [0],
  iif: [2, 3],
  startsWith: [1],
  endsWith: [1],
  join: [0, 1],
};

function compileFunction(fn: AstNode): Eval {
  const name = identifier(kids(fn)[0] ?? { type: 'missing' });
  const args = params(fn);
  const allowed = Object.hasOwn(FUNCTIONS, name) ? FUNCTIONS[name] : undefined;
  if (allowed === undefined) unsupported(`function ${name}()`);
  if (!allowed.includes(args.length)) unsupported(`${name}() with ${args.length} argument(s)`);
  const [a0, a1, a2] = args.map(compileNode) as [Eval, Eval, Eval];
  switch (name) {
    case 'where':
      return (data) => {
        const out: Item[] = [];
        for (const x of data) {
          const self = [x];
          // fhirpath.js keeps an item when the criterion's first result is truthy in JavaScript.
          if (a0(self, self)[0]) out.push(x);
        }
        return out;
      };
    case 'select':
      return (data) => {
        const out: Item[] = [];
        for (const x of data) {
          const self = [x];
          for (const y of a0(self, self)) out.push(y);
        }
        return out;
      };
    case 'exists':
      if (args.length === 0) return (data) => bool(data.length > 0);
      return (data) => {
        // Every item is evaluated, as fhirpath.js does (an error on a later item is still its error).
        let found = false;
        for (const x of data) {
          const self = [x];
          if (a0(self, self)[0]) found = true;
        }
        return bool(found);
      };
    case 'empty':
      return (data) => bool(data.length === 0);
    case 'not':
      return (data) => {
        const b = singletonBoolean(data);
        return b === undefined ? EMPTY : bool(!b);
      };
    case 'count':
      return (data) => [data.length];
    case 'first':
      return (data) => (data.length === 0 ? EMPTY : [data[0]]);
    case 'last':
      return (data) => (data.length === 0 ? EMPTY : [data[data.length - 1]]);
    case 'tail':
      return (data) => data.slice(1);
    case 'iif':
      return (data) => {
        // The criterion and both results are evaluated with $this = the whole input collection.
        const c = a0(data, data);
        if (c.length === 1 && valData(c[0]) === true) return a1(data, data);
        return a2 === undefined ? EMPTY : a2(data, data);
      };
    case 'startsWith':
    case 'endsWith': {
      const starts = name === 'startsWith';
      return (data, self) => {
        const affix = singletonString(a0(self, self));
        const str = singletonString(data);
        if (affix === undefined || str === undefined) return EMPTY;
        return bool(starts ? str.startsWith(affix) : str.endsWith(affix));
      };
    }
    case 'join':
      return (data, self) => {
        // An empty separator argument joins with '' in fhirpath.js (Array.prototype.join([])).
        const separator = a0 === undefined ? '' : (singletonString(a0(self, self)) ?? '');
        const strings: string[] = [];
        for (const x of data) {
          const v = valData(x);
          if (typeof v === 'string') strings.push(v);
          else if (v !== null && v !== undefined) bail();
        }
        return strings.length === 0 ? EMPTY : [strings.join(separator)];
      };
    default:
      return unsupported(`function ${name}()`);
  }
}

function binary(node: AstNode): [Eval, Eval] {
  const c = kids(node);
  if (c.length !== 2) unsupported(`${node.type} with ${c.length} operands`);
  return [compileNode(c[0] as AstNode), compileNode(c[1] as AstNode)];
}

/** deep-equal.js for two items, where it can be decided without FHIRPath type conversions. */
function itemsEqual(a: Item, b: Item): boolean {
  const aNode = a instanceof Node;
  const bNode = b instanceof Node;
  const av = aNode ? a.d : a;
  const bv = bNode ? b.d : b;
  const aDate = aNode && a.p !== null && DATE_PATHS.has(a.p);
  const bDate = bNode && b.p !== null && DATE_PATHS.has(b.p);
  if (aDate || bDate) {
    // A date/time becomes an FP type (or stays an unparseable string): never equal to a boolean.
    if (aDate && bDate) bail();
    const [dateValue, other] = aDate ? [av, bv] : [bv, av];
    if (typeof dateValue === 'string' && typeof other === 'boolean') return false;
    bail();
  }
  const ta = typeof av;
  const tb = typeof bv;
  // Numbers are FP_Decimal (rounded comparison); objects are compared deeply and quantities converted.
  if (ta === 'number' || tb === 'number' || ta === 'bigint' || tb === 'bigint') bail();
  if ((ta === 'object' && av !== null) || (tb === 'object' && bv !== null)) bail();
  if (ta === 'function' || tb === 'function' || ta === 'symbol' || tb === 'symbol') bail();
  // Two nodes also compare their `_data`; the fast path never makes nodes that have any.
  return av === bv;
}

/** FHIRPath `=` on collections: empty if either is empty, else same length and pairwise equal. */
function collectionsEqual(l: Coll, r: Coll): boolean | undefined {
  if (l.length === 0 || r.length === 0) return undefined;
  if (l === r) return true;
  if (l.length !== r.length) return false;
  // Every pair is decided (or bails) before answering, so the order fhirpath.js visits pairs in is moot.
  let all = true;
  for (let i = 0; i < l.length; i++) if (!itemsEqual(l[i], r[i])) all = false;
  return all;
}

function compileEquality(node: AstNode): Eval {
  const op = node.text;
  if (op !== '=' && op !== '!=') unsupported(`operator ${op}`);
  const [left, right] = binary(node);
  const negate = op === '!=';
  return (_data, self) => {
    const eq = collectionsEqual(left(self, self), right(self, self));
    if (eq === undefined) return EMPTY;
    return bool(negate ? !eq : eq);
  };
}

function compileLogic(node: AstNode): Eval {
  const op = node.text;
  if (op !== 'and' && op !== 'or') unsupported(`operator ${op}`);
  const [left, right] = binary(node);
  if (op === 'and')
    return (_data, self) => {
      // Both operands are always evaluated (an error on either side is fhirpath's error).
      const a = singletonBoolean(left(self, self));
      const b = singletonBoolean(right(self, self));
      if (a === false || b === false) return FALSE;
      if (a === undefined || b === undefined) return EMPTY;
      return TRUE;
    };
  return (_data, self) => {
    const a = singletonBoolean(left(self, self));
    const b = singletonBoolean(right(self, self));
    if (a === true || b === true) return TRUE;
    if (a === undefined || b === undefined) return EMPTY;
    return FALSE;
  };
}

function compilePlus(node: AstNode): Eval {
  if (node.text !== '+') unsupported(`operator ${node.text}`);
  const [left, right] = binary(node);
  const operand = (coll: Coll): string | undefined => {
    const item = coll[0];
    if (item instanceof Node && item.p !== null && DATE_PATHS.has(item.p)) bail();
    const v = valData(item);
    if (v === null || v === undefined) return undefined;
    return typeof v === 'string' ? v : bail();
  };
  return (_data, self) => {
    const l = left(self, self);
    const r = right(self, self);
    if (l.length === 0 || r.length === 0) return EMPTY;
    if (l.length !== 1 || r.length !== 1) bail();
    const a = operand(l);
    const b = operand(r);
    return a === undefined || b === undefined ? EMPTY : [a + b];
  };
}
