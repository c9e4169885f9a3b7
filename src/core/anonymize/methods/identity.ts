import { isJsonObject, type JsonObject, str } from '../../fhir/resource.ts';
import { type ResourceRef, resolveReference } from '../context.ts';
import { type MethodInput, type MethodResult, STRING_TYPES, unsupported } from './types.ts';

/**
 * The shared shape of the methods that replace an identity with a stand-in (pseudonym, hash, token):
 * a resource's own id and every reference to it get the same stand-in, so links survive across resources
 * and files; identifiers keep their role but not their value; other strings are replaced one for one.
 */
export interface IdentityOps {
  readonly method: string;
  /** Recorded in the audit: key id, namespace… never a value. */
  readonly summary: string;
  /** The stand-in logical id of a resource (used for its own id and for references to it). */
  resourceId(ref: ResourceRef): string;
  identifier(system: string, value: string): { system: string; value: string };
  text(value: string): string;
}

export function applyIdentity(input: MethodInput<unknown>, ops: IdentityOps): MethodResult {
  const { value, type } = input;
  if (input.depth === 1 && input.name === 'id' && typeof value === 'string') {
    return replace(ops.resourceId({ resourceType: input.record.resourceType, id: value }), ops);
  }
  if (type === 'Reference' && isJsonObject(value)) {
    const reference = typeof value.reference === 'string' ? rewrite(value.reference, input, ops) : undefined;
    if (reference === undefined) return unresolved(ops);
    const out: JsonObject = { reference };
    if (typeof value.type === 'string') out.type = value.type;
    return replace(out, ops);
  }
  if (type === 'Identifier' && isJsonObject(value)) {
    const raw = str(value.value);
    if (raw === undefined)
      return { kind: 'remove', summary: `${ops.method}: identifier without value removed` };
    const out: JsonObject = { ...ops.identifier(str(value.system) ?? '', raw) };
    if (typeof value.use === 'string') out.use = value.use;
    return replace(out, ops);
  }
  if (input.name === 'reference' && typeof value === 'string') {
    const reference = rewrite(value, input, ops);
    return reference === undefined ? unresolved(ops) : replace(reference, ops);
  }
  if (isJsonObject(value)) return { kind: 'descend' };
  if (typeof value === 'string' && STRING_TYPES.has(type)) return replace(ops.text(value), ops);
  return unsupported(ops.method, input);
}

function rewrite(reference: string, input: MethodInput<unknown>, ops: IdentityOps): string | undefined {
  const target = resolveReference(reference, input.record.ctx);
  return target && `${target.resourceType}/${ops.resourceId(target)}`;
}

function replace(value: string | JsonObject, ops: IdentityOps): MethodResult {
  return { kind: 'replace', value, summary: ops.summary };
}

function unresolved(ops: IdentityOps): MethodResult {
  return {
    kind: 'remove',
    summary: `${ops.method}: unresolvable reference removed`,
    warning: {
      code: 'ANON_REFERENCE_UNRESOLVED',
      message: 'reference is not a literal Type/id or known bundle entry; removed',
    },
  };
}
