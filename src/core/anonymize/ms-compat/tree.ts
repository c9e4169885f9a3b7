import { isJsonObject, type Json, type JsonObject } from '../../fhir/resource.ts';
import { childElement, isPrimitiveType, isResourceTypeName } from '../schema.ts';

/**
 * A FHIR resource as the element tree the upstream tool works on (Firely's ElementNode): every element
 * occurrence is a node with its element name (`value` for `valueQuantity`), its instance type, a primitive
 * value and children; a primitive's `_name` companion (id, extension) becomes its children. Processors
 * mutate nodes in place, as upstream does, and the tree is serialised back to JSON at the end.
 */
export interface MsNode {
  /** Element name without the choice suffix; the resource type for a root. */
  readonly name: string;
  /** The JSON key it came from (`valueQuantity`); '' for a root. */
  key: string;
  /** FHIR instance type: `HumanName`, `date`, `Patient`… */
  type: string;
  /** The primitive value (null when none or removed). */
  value: string | number | boolean | null;
  children: MsNode[];
  parent: MsNode | undefined;
  readonly isResource: boolean;
  readonly primitive: boolean;
  /** Whether the JSON property is a list (kept so the output has the same shape). */
  readonly inArray: boolean;
}

export class MsInputError extends Error {}

const SYSTEM_PREFIX = 'http://hl7.org/fhirpath/System.';

/** Builds the tree of a resource object; unknown elements are input errors (fail closed, never passed through). */
export function buildTree(resource: JsonObject): MsNode {
  const type = resource.resourceType;
  if (typeof type !== 'string' || !isResourceTypeName(type)) {
    throw new MsInputError('not an R4 resource (resourceType)');
  }
  return buildObject(resource, type, type, '', undefined, true, false, type);
}

/** A complex data type value (a substitute's `replaceWith` fragment) as a detached subtree. */
export function buildSubtree(value: JsonObject, type: string): MsNode {
  return buildObject(value, type, '', '', undefined, false, false, type);
}

function buildObject(
  value: JsonObject,
  type: string,
  name: string,
  key: string,
  parent: MsNode | undefined,
  isResource: boolean,
  inArray: boolean,
  path: string,
): MsNode {
  const node: MsNode = {
    name,
    key,
    type,
    value: null,
    children: [],
    parent,
    isResource,
    primitive: false,
    inArray,
  };
  node.children = buildChildren(node, value, type, isResource, path);
  return node;
}

function buildChildren(
  node: MsNode,
  value: JsonObject,
  type: string,
  isResource: boolean,
  path: string,
): MsNode[] {
  const out: MsNode[] = [];
  const seen = new Set<string>();
  for (const rawKey of Object.keys(value)) {
    if (isResource && rawKey === 'resourceType') continue;
    if (rawKey === 'fhir_comments') continue;
    const key = rawKey.startsWith('_') ? rawKey.slice(1) : rawKey;
    if (seen.has(key)) continue;
    seen.add(key);
    const info = childElement(type, key);
    if (!info) throw new MsInputError(`${path}.${key}: not an element of ${type}`);
    const main = value[key];
    const companion = value[`_${key}`];
    const elementType = normaliseType(info.type, key, type);
    if (elementType === 'Resource' || (!isPrimitiveType(elementType) && elementType !== 'xhtml')) {
      const items = Array.isArray(main) ? main : main === undefined || main === null ? [] : [main];
      for (const item of items) {
        if (!isJsonObject(item)) throw new MsInputError(`${path}.${key}: expected an object`);
        let itemType = elementType;
        let resource = false;
        if (elementType === 'Resource') {
          const rt = item.resourceType;
          if (typeof rt !== 'string' || !isResourceTypeName(rt)) {
            throw new MsInputError(`${path}.${key}: not an R4 resource`);
          }
          itemType = rt;
          resource = true;
        }
        out.push(
          buildObject(item, itemType, info.name, key, node, resource, Array.isArray(main), `${path}.${key}`),
        );
      }
      continue;
    }
    const values = Array.isArray(main) ? main : main === undefined ? [] : [main];
    const companions = Array.isArray(companion) ? companion : companion === undefined ? [] : [companion];
    const count = Math.max(values.length, companions.length);
    const inArray = Array.isArray(main) || Array.isArray(companion);
    for (let i = 0; i < count; i++) {
      const raw: Json | undefined = values[i];
      if (raw !== undefined && raw !== null && typeof raw === 'object') {
        throw new MsInputError(`${path}.${key}: expected a primitive value`);
      }
      const prim: MsNode = {
        name: info.name,
        key,
        type: elementType,
        value: raw ?? null,
        children: [],
        parent: node,
        isResource: false,
        primitive: true,
        inArray,
      };
      const extra = companions[i];
      if (isJsonObject(extra)) prim.children = buildChildren(prim, extra, 'Element', false, `${path}.${key}`);
      out.push(prim);
    }
  }
  return out;
}

/** FHIRPath system types in the model (`Resource.id`, `Extension.url`) named as FHIR types, as upstream sees them. */
function normaliseType(type: string, key: string, parentType: string): string {
  if (!type.startsWith(SYSTEM_PREFIX)) return type;
  if (key === 'id' && isResourceTypeName(parentType)) return 'id';
  if (key === 'url' && parentType === 'Extension') return 'uri';
  return 'string';
}

/** The root of the whole tree (the Bundle for an entry), as upstream's `TryGetResourceId` walks to it. */
export function rootOf(node: MsNode): MsNode {
  let current = node;
  while (current.parent) current = current.parent;
  return current;
}

/** Self and descendants, not entering nested resources (they are processed as resources of their own). */
export function* descendantsWithoutSubResources(node: MsNode, self = true): Generator<MsNode> {
  if (self) yield node;
  for (const child of node.children) {
    if (child.isResource) continue;
    yield* descendantsWithoutSubResources(child, true);
  }
}

/**
 * Serialises a node to FHIR JSON. With `keepEmpty`, removed values stay as nulls and empty objects so list
 * positions match the tree (FHIRPath results are mapped back to nodes by position).
 */
export function toJson(node: MsNode, keepEmpty: boolean): JsonObject {
  const out: JsonObject = {};
  if (node.isResource) out.resourceType = node.type;
  const groups = new Map<string, MsNode[]>();
  for (const child of node.children) {
    const list = groups.get(child.key);
    if (list) list.push(child);
    else groups.set(child.key, [child]);
  }
  for (const [key, items] of groups) {
    const first = items[0] as MsNode;
    if (first.primitive) {
      const values = items.map((i) => i.value);
      const companions = items.map((i) => (i.children.length > 0 ? toJson(i, keepEmpty) : null));
      const anyValue = values.some((v) => v !== null);
      const anyCompanion = companions.some((c) => c !== null);
      if (first.inArray) {
        if (anyValue || keepEmpty) out[key] = values;
        if (anyCompanion) out[`_${key}`] = companions;
      } else {
        if (values[0] !== null || (keepEmpty && !anyCompanion)) out[key] = values[0] ?? null;
        if (companions[0]) out[`_${key}`] = companions[0];
      }
      continue;
    }
    const objects = items.map((i) => toJson(i, keepEmpty));
    out[key] = first.inArray ? objects : (objects[0] as JsonObject);
  }
  return out;
}

/** Upstream's final clean-up: nodes without value and children are removed, bottom-up (resources stay). */
export function removeEmpty(node: MsNode): void {
  node.children = node.children.filter((child) => {
    removeEmpty(child);
    return child.isResource || child.value !== null || child.children.length > 0;
  });
}

/** `Patient.name.given`: the element path of a node without indices (for audits; never values). */
export function pathOf(node: MsNode): string {
  const names: string[] = [];
  let current: MsNode | undefined = node;
  while (current) {
    names.push(current.parent ? current.name : current.type);
    if (current.isResource && current.parent) {
      names[names.length - 1] = current.type;
      break;
    }
    current = current.parent;
  }
  return names.reverse().join('.');
}
