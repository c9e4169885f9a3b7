/**
 * Deterministic mutations of real FHIR resources, for adversarial tests of the validators: each takes a
 * resource and two choice numbers (which node, which variant) and returns a mutated deep copy, or
 * undefined when the resource has no node the mutation applies to. Used with fast-check, which supplies
 * the numbers and shrinks failures to a small case.
 */

type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
type JsonObject = { [key: string]: JsonValue };

/** A place in the tree: the container and the key (object property or array index) of a value. */
interface Slot {
  readonly parent: JsonObject | JsonValue[];
  readonly key: string | number;
  readonly value: JsonValue;
  /** True for the root resource's own keys. */
  readonly top: boolean;
}

export const MUTATION_KINDS = [
  'deleteKey',
  'wrongPrimitiveType',
  'emptyString',
  'badCode',
  'unknownKey',
  'badId',
  'wrapInArray',
  'unwrapArray',
  'nullValue',
  'emptyObject',
  'emptyArray',
  'badDate',
  'duplicateChoice',
  'numberAsString',
] as const;

export type MutationKind = (typeof MUTATION_KINDS)[number];

function slots(root: JsonObject): Slot[] {
  const out: Slot[] = [];
  const walk = (node: JsonValue, top: boolean): void => {
    if (Array.isArray(node)) {
      node.forEach((value, key) => {
        out.push({ parent: node, key, value, top: false });
        walk(value, false);
      });
    } else if (node !== null && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'resourceType') continue;
        out.push({ parent: node, key, value, top });
        walk(value, false);
      }
    }
  };
  walk(root, true);
  return out;
}

function set(slot: Slot, value: JsonValue | undefined): void {
  if (Array.isArray(slot.parent)) {
    if (value === undefined) slot.parent.splice(slot.key as number, 1);
    else slot.parent[slot.key as number] = value;
  } else if (value === undefined) {
    delete slot.parent[slot.key as string];
  } else {
    slot.parent[slot.key as string] = value;
  }
}

function pick<T>(items: readonly T[], n: number): T | undefined {
  return items.length === 0 ? undefined : items[n % items.length];
}

const isObject = (v: JsonValue): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const DATE_LIKE = /^\d{4}(-\d{2}(-\d{2}(T.*)?)?)?$/;

/** Applies one mutation; `node` picks the target, `variant` a flavour of the mutation. */
export function mutate(
  resource: object,
  kind: MutationKind,
  node: number,
  variant: number,
): object | undefined {
  const copy = structuredClone(resource) as JsonObject;
  const all = slots(copy);
  const keyed = all.filter((s) => typeof s.key === 'string');
  const strings = all.filter((s) => typeof s.value === 'string');
  switch (kind) {
    case 'deleteKey': {
      const slot = pick(keyed, node);
      if (!slot) return undefined;
      set(slot, undefined);
      break;
    }
    case 'wrongPrimitiveType': {
      const slot = pick(
        all.filter((s) => typeof s.value !== 'object' || s.value === null),
        node,
      );
      if (!slot) return undefined;
      const replacements: JsonValue[] =
        typeof slot.value === 'string'
          ? [42, true, { x: 1 }]
          : typeof slot.value === 'number'
            ? ['7', false]
            : ['true', 1];
      set(slot, pick(replacements, variant) ?? 0);
      break;
    }
    case 'emptyString': {
      const slot = pick(strings, node);
      if (!slot) return undefined;
      set(slot, pick(['', ' ', '\t'], variant) ?? '');
      break;
    }
    case 'badCode': {
      const codes = keyed.filter(
        (s) => typeof s.value === 'string' && /^[a-z][a-z-]*$/.test(s.value) && s.value.length < 40,
      );
      const slot = pick(codes, node);
      if (!slot) return undefined;
      set(slot, pick(['mal', 'UNKNOWN', `${slot.value}x`], variant) ?? 'mal');
      break;
    }
    case 'unknownKey': {
      const objects = all.filter((s) => isObject(s.value));
      const target = pick([copy, ...objects.map((s) => s.value as JsonObject)], node);
      if (!target) return undefined;
      target[pick(['foo', 'valueFoo', '_bar', 'Status', 'resourceType'], variant) ?? 'foo'] = 'x';
      break;
    }
    case 'badId': {
      const ids = keyed.filter((s) => s.key === 'id' && typeof s.value === 'string');
      const slot = pick(ids, node) ?? { parent: copy, key: 'id', value: null, top: true };
      set(slot, pick(['a b', 'x'.repeat(65), 'é', 'a/b', ''], variant) ?? 'a b');
      break;
    }
    case 'wrapInArray': {
      const slot = pick(
        keyed.filter((s) => !Array.isArray(s.value)),
        node,
      );
      if (!slot) return undefined;
      set(slot, [slot.value]);
      break;
    }
    case 'unwrapArray': {
      const slot = pick(
        keyed.filter((s) => Array.isArray(s.value) && s.value.length > 0),
        node,
      );
      if (!slot) return undefined;
      set(slot, (slot.value as JsonValue[])[0] ?? null);
      break;
    }
    case 'nullValue': {
      const slot = pick(all, node);
      if (!slot) return undefined;
      set(slot, null);
      break;
    }
    case 'emptyObject': {
      const slot = pick(
        all.filter((s) => isObject(s.value)),
        node,
      );
      if (!slot) return undefined;
      set(slot, {});
      break;
    }
    case 'emptyArray': {
      const slot = pick(
        keyed.filter((s) => Array.isArray(s.value)),
        node,
      );
      if (!slot) return undefined;
      set(slot, []);
      break;
    }
    case 'badDate': {
      const dates = strings.filter((s) => DATE_LIKE.test(s.value as string));
      const slot = pick(dates, node);
      if (!slot) return undefined;
      const bad = [
        '2021-02-30',
        '2021-13-01',
        '21-01-01',
        '2021-01-01T25:00:00Z',
        '2021-01-01 10:00',
        '2021/01/01',
      ];
      set(slot, pick(bad, variant) ?? '2021-13-01');
      break;
    }
    case 'duplicateChoice': {
      const choices = keyed.filter((s) =>
        /^(value|effective|onset|abatement|deceased|multipleBirth|occurrence|medication|timing|bounds)[A-Z]/.test(
          s.key as string,
        ),
      );
      const slot = pick(choices, node);
      if (!slot || Array.isArray(slot.parent)) return undefined;
      const prefix = /^[a-z]+(?=[A-Z])/.exec(slot.key as string)?.[0] ?? 'value';
      const other = pick(['String', 'Boolean', 'Integer', 'DateTime'], variant) ?? 'String';
      const extra = `${prefix}${other}`;
      if (extra === slot.key) return undefined;
      slot.parent[extra] =
        other === 'String' ? 'x' : other === 'Boolean' ? true : other === 'Integer' ? 1 : '2020-01-01';
      break;
    }
    case 'numberAsString': {
      const slot = pick(
        all.filter((s) => typeof s.value === 'number'),
        node,
      );
      if (!slot) return undefined;
      set(slot, String(slot.value));
      break;
    }
  }
  return copy;
}
