import { SluiceError } from '../../errors/index.ts';
import type { TokenizeParams } from '../rules.ts';
import { applyIdentity } from './identity.ts';
import type { MethodInput, MethodResult } from './types.ts';

export function tokenSystem(namespace: string): string {
  return `urn:sluice:token:${namespace}`;
}

/** Random tokens from the vault: reversible, but only through `TokenVault.reidentify` with a permission. */
export function tokenizeMethod(input: MethodInput<TokenizeParams>): MethodResult {
  const vault = input.record.ctx.tokenizer;
  if (!vault) throw new SluiceError('ANON_CONTEXT_INVALID', 'The tokenize method needs a token vault.');
  const ns = input.params.namespace;
  return applyIdentity(input, {
    method: 'tokenize',
    summary: `vault namespace=${ns}`,
    resourceId: (ref) => vault.tokenize(ns, `${ref.resourceType}/${ref.id}`),
    identifier: (system, value) => ({
      system: tokenSystem(ns),
      value: vault.tokenize(ns, `${system}|${value}`),
    }),
    text: (value) => vault.tokenize(ns, value),
  });
}
