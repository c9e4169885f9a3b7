import type { Json, JsonObject } from '../../fhir/resource.ts';
import type { AnonymizeContext } from '../context.ts';

/** What a method sees of one element. Values are the source's; a method returns a new value, never mutates. */
export interface MethodInput<P> {
  readonly value: Json;
  /** FHIR type code of the element (`Reference`, `date`, `Address`…). */
  readonly type: string;
  /** Element name without `[x]` (`onset` for `onsetAge`). */
  readonly name: string;
  readonly choice: boolean;
  /** Concrete element path without indices: `Patient.address.postalCode`. */
  readonly path: string;
  /** 1 for an element of the resource itself. */
  readonly depth: number;
  /** The object holding the element (an Address for `postalCode`) and its FHIR type. */
  readonly parent: JsonObject;
  readonly parentType: string;
  readonly params: P;
  readonly record: RecordScope;
}

/** Per-record facts a method may need. */
export interface RecordScope {
  readonly resourceType: string;
  /** Source id of the patient the record is about, when there is one. */
  readonly patientId?: string;
  /** A code naming what the record measures (`system|code`), to seed per-measure noise. */
  readonly measure?: string;
  readonly ctx: AnonymizeContext;
}

export type MethodResult =
  /** The element becomes `value` (under `key` when a choice element changes type). */
  | { readonly kind: 'replace'; readonly value: Json; readonly key?: string; readonly summary: string }
  /** The element is removed; `warning` says why when it was not the intent (unsupported type, no person). */
  | {
      readonly kind: 'remove';
      readonly summary: string;
      readonly warning?: { readonly code: string; readonly message: string };
    }
  /** The method does not act on this complex element as a whole: apply it to each child instead. */
  | { readonly kind: 'descend' };

export function unsupported(method: string, input: { type: string }): MethodResult {
  return {
    kind: 'remove',
    summary: `${method} does not apply to ${input.type}; removed`,
    warning: { code: 'ANON_METHOD_UNSUPPORTED', message: `${method} does not apply to type ${input.type}` },
  };
}

export const STRING_TYPES: ReadonlySet<string> = new Set(['string', 'id']);
