import { SluiceError } from '../../errors/index.ts';
import type { MethodSpec } from '../rules.ts';
import { dateshiftMethod } from './dateshift.ts';
import { generalizeMethod, NOT_GENERALIZABLE } from './generalize.ts';
import { hashMethod } from './hash.ts';
import { perturbMethod } from './perturb.ts';
import { pseudonymizeMethod } from './pseudonymize.ts';
import { tokenizeMethod } from './tokenize.ts';
import type { MethodInput, MethodResult } from './types.ts';

/** Runs a transforming method; `keep`, `redact` and `suppress` are structural and handled by the pipeline. */
export function runMethod(spec: MethodSpec, input: Omit<MethodInput<unknown>, 'params'>): MethodResult {
  switch (spec.method) {
    case 'keep':
    case 'redact':
    case 'suppress':
      throw new SluiceError('INTERNAL', `The ${spec.method} method is applied by the pipeline, not run.`);
    case 'pseudonymize':
      return pseudonymizeMethod({ ...input, params: spec.params });
    case 'tokenize':
      return tokenizeMethod({ ...input, params: spec.params });
    case 'hash':
      return hashMethod({ ...input, params: {} });
    case 'generalize':
      return generalizeMethod({ ...input, params: spec.params });
    case 'dateshift':
      return dateshiftMethod({ ...input, params: spec.params });
    case 'perturb':
      return perturbMethod({ ...input, params: spec.params });
  }
}

/**
 * Whether a method acts on a complex element of this type as a whole (an Address generalised to ZIP3, a
 * Reference pseudonymised) rather than on its parts; class defaults are applied at such elements.
 */
export function actsOnWhole(method: MethodSpec['method'], type: string): boolean {
  switch (method) {
    case 'redact':
    case 'suppress':
      return true;
    case 'keep':
    case 'dateshift':
      return false;
    case 'generalize':
      return type === 'Address' || type === 'Age' || NOT_GENERALIZABLE.has(type);
    case 'pseudonymize':
    case 'hash':
    case 'tokenize':
      return type === 'Reference' || type === 'Identifier';
    case 'perturb':
      return ['Quantity', 'SimpleQuantity', 'Age', 'Duration', 'Distance', 'Count'].includes(type);
  }
}
