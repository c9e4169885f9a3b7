import {
  type ClassEntry,
  DATA_CLASSES,
  type DataClass,
  ELEMENT_ID,
  FREE_TEXT_ELEMENT_NAMES,
  RESOURCE_CLASSES,
  RESOURCE_ELEMENT_CLASSES,
  RESOURCE_ID,
  type SafeHarborCategory,
  TYPE_CLASSES,
  TYPE_ELEMENT_CLASSES,
  UNKNOWN_ELEMENT,
} from './classification.ts';
import {
  childElement,
  type ElementInfo,
  elementNames,
  elementTypes,
  isPrimitiveType,
  isResourceTypeName,
} from './schema.ts';

/** The verdict on one element of one resource. */
export interface Classification {
  readonly class: DataClass;
  readonly categories: readonly SafeHarborCategory[];
  readonly freeText: boolean;
  /** The table entry that decided (`Patient.birthDate`, `type:HumanName`), `inherited`, or `unknown`. */
  readonly basis: string;
}

/** Where an element sits: enough to look it up in every table. */
export interface ElementPosition {
  readonly resourceType: string;
  /** Path with choice elements in schema form: `Observation.value[x]`. */
  readonly schemaPath: string;
  /** Path with JSON keys: `Observation.valueQuantity`. */
  readonly concretePath: string;
  /** Type of the object holding the element (`HumanName`, `PatientContact`, or the resource type). */
  readonly parentType: string;
  readonly element: ElementInfo;
  /** 1 for an element of the resource itself. */
  readonly depth: number;
}

const RANK: Readonly<Record<DataClass, number>> = { direct: 0, quasi: 1, sensitive: 2, other: 3 };

/** The more restrictive of two classes. */
export function stricter(a: DataClass, b: DataClass): DataClass {
  return RANK[a] <= RANK[b] ? a : b;
}

export function isDataClass(value: string): value is DataClass {
  return (DATA_CLASSES as readonly string[]).includes(value);
}

/** The class of a resource's root: types outside the table are direct identifiers as a whole (fail closed). */
export function classifyRoot(resourceType: string): Classification {
  const known = RESOURCE_CLASSES[resourceType];
  if (known !== undefined) return { class: known, categories: [], freeText: false, basis: resourceType };
  return { class: 'direct', categories: ['other-unique'], freeText: false, basis: 'unknown-resource-type' };
}

/** A key the element model does not know, under any parent: the most restrictive class. */
export function classifyUnknown(parent: Classification): Classification {
  return combine(parent, UNKNOWN_ELEMENT, 'unknown');
}

export function classifyElement(parent: Classification, position: ElementPosition): Classification {
  const found = lookup(position);
  if (found.length === 0) return inherit(parent);
  // The strictest tier decides the class; categories and the free-text mark add up.
  let entry: ClassEntry = {};
  let basis = 'inherited';
  for (const [e, b] of found) {
    const merged =
      e.class === undefined
        ? entry.class
        : entry.class === undefined
          ? e.class
          : stricter(entry.class, e.class);
    if (merged !== entry.class) basis = b;
    entry = {
      ...(merged === undefined ? {} : { class: merged }),
      categories: [...(entry.categories ?? []), ...(e.categories ?? [])],
      freeText: entry.freeText === true || e.freeText === true,
    };
  }
  if (entry.class === undefined) basis = found[0]?.[1] ?? basis;
  return combine(parent, entry, basis);
}

/** The entries that speak about an element: path-specific, then `Type.element` or free-text name, then type. */
function lookup(position: ElementPosition): [ClassEntry, string][] {
  const { element } = position;
  const out: [ClassEntry, string][] = [];
  const byConcrete = RESOURCE_ELEMENT_CLASSES[position.concretePath];
  const bySchema = RESOURCE_ELEMENT_CLASSES[position.schemaPath];
  if (byConcrete) out.push([byConcrete, position.concretePath]);
  else if (bySchema) out.push([bySchema, position.schemaPath]);
  else if (element.key === 'id') {
    out.push(position.depth === 1 ? [RESOURCE_ID, 'resource-id'] : [ELEMENT_ID, 'element-id']);
  }
  const schemaName = element.choice ? `${element.name}[x]` : element.name;
  const typeElementKey = `${position.parentType}.${schemaName}`;
  const byTypeElement = TYPE_ELEMENT_CLASSES[typeElementKey];
  if (byTypeElement) out.push([byTypeElement, typeElementKey]);
  else if (
    FREE_TEXT_ELEMENT_NAMES.has(element.name) &&
    (element.type === 'string' || element.type === 'markdown')
  ) {
    out.push([
      { class: 'direct', categories: ['other-unique'], freeText: true },
      `free-text:${element.name}`,
    ]);
  }
  const byType = TYPE_CLASSES[element.type];
  if (byType) out.push([byType, `type:${element.type}`]);
  return out;
}

function inherit(parent: Classification): Classification {
  return { class: parent.class, categories: parent.categories, freeText: false, basis: 'inherited' };
}

function combine(parent: Classification, entry: ClassEntry, basis: string): Classification {
  const own = entry.class ?? parent.class;
  const cls = stricter(parent.class, own);
  const categories = [...new Set([...(entry.categories ?? []), ...parent.categories])];
  return {
    class: cls,
    categories,
    freeText: entry.freeText === true,
    basis: cls === own ? basis : 'inherited',
  };
}

/**
 * Classifies a concrete element path such as `Patient.address.line` or `Observation.valueQuantity.value`,
 * walking the element model. Undefined when the resource type is unknown; an unknown element on the way
 * makes the rest of the path `unknown` (most restrictive).
 */
export function classifyPath(path: string): Classification | undefined {
  const [resourceType, ...keys] = path.split('.');
  if (resourceType === undefined || !isResourceTypeName(resourceType)) return undefined;
  let cls = classifyRoot(resourceType);
  let type = resourceType;
  let schemaPath = resourceType;
  let concretePath = resourceType;
  let depth = 0;
  for (const key of keys) {
    const element = childElement(type, key);
    if (!element) return classifyUnknown(cls);
    depth++;
    schemaPath += `.${element.choice ? `${element.name}[x]` : element.name}`;
    concretePath += `.${key}`;
    cls = classifyElement(cls, { resourceType, schemaPath, concretePath, parentType: type, element, depth });
    type = element.type;
  }
  return cls;
}

/** One element of a resource type, as enumerated from the model. */
export interface ClassifiedElement {
  readonly path: string;
  readonly type: string;
  readonly classification: Classification;
}

/**
 * Every element path of a resource type down to `maxDepth` levels, each classified: the table a privacy
 * review reads. Extensions and contained resources are listed but not expanded (they are classified as
 * wholes); choice elements are expanded to each concrete type.
 */
export function enumerateElements(resourceType: string, maxDepth = 4): ClassifiedElement[] {
  const out: ClassifiedElement[] = [];
  const visit = (
    type: string,
    cls: Classification,
    schemaPath: string,
    concretePath: string,
    depth: number,
  ): void => {
    if (depth >= maxDepth) return;
    for (const declared of elementNames(type)) {
      const choice = declared.endsWith('[x]');
      const base = choice ? declared.slice(0, -3) : declared;
      const keys = choice
        ? elementTypes(type, declared).map((t) => base + t.charAt(0).toUpperCase() + t.slice(1))
        : [declared];
      for (const key of keys) {
        const element = childElement(type, key);
        if (!element) continue;
        const childSchema = `${schemaPath}.${declared}`;
        const childConcrete = `${concretePath}.${key}`;
        const position = {
          resourceType,
          schemaPath: childSchema,
          concretePath: childConcrete,
          parentType: type,
          element,
          depth: depth + 1,
        };
        const childCls = classifyElement(cls, position);
        out.push({ path: childConcrete, type: element.type, classification: childCls });
        if (isPrimitiveType(element.type) || element.type === 'Extension' || element.type === 'Resource')
          continue;
        visit(element.type, childCls, childSchema, childConcrete, depth + 1);
      }
    }
  };
  visit(resourceType, classifyRoot(resourceType), resourceType, resourceType, 0);
  return out;
}
