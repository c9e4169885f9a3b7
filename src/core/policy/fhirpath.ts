import { compile } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';

/** A FHIRPath expression compiled once against the R4 model (choice types such as `deceased[x]` resolve). */
export type CompiledPath = (resource: object) => unknown[];

export function compileFhirPath(expression: string): CompiledPath {
  const fn = compile(expression, r4, { async: false });
  return (resource: object) => fn(resource) as unknown[];
}

/** FHIRPath truthiness for a rule: exactly `[true]` counts; an empty result or `[false]` does not. */
export function isTrue(result: unknown[]): boolean {
  return result.length === 1 && result[0] === true;
}
