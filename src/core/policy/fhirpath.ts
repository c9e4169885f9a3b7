import { compile } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { BAIL, compileFast } from './fhirpath-fast.ts';

let fallbacks = 0;

/** A FHIRPath expression compiled once against the R4 model (choice types such as `deceased[x]` resolve). */
export type CompiledPath = (resource: object) => unknown[];

/**
 * Compiles a FHIRPath expression. Expressions inside a well-defined subset (see `explainFhirPath`) become
 * plain closures that mirror fhirpath.js exactly; everything else, and any input the closures cannot
 * evaluate with certainty (a runtime "bail"), is evaluated by fhirpath.js itself. Throws on a syntax error.
 */
export function compileFhirPath(expression: string): CompiledPath {
  // Both go through fhirpath.js's parser, so a syntax error throws here either way; fhirpath.js compiles
  // an expression in the subset only when an input first needs it.
  const fast = compileFast(expression);
  if (typeof fast === 'string') return compileSlow(expression);
  let slow: CompiledPath | undefined;
  return onBail(fast, (resource) => {
    fallbacks++;
    slow ??= compileSlow(expression);
    return slow(resource);
  });
}

/** The fast closure, with `fallback` answering the inputs it hands back (BAIL). */
function onBail<T>(
  fast: (resource: object) => unknown[],
  fallback: (resource: object) => T,
): (resource: object) => unknown[] | T {
  return (resource: object) => {
    try {
      return fast(resource);
    } catch (err) {
      if (err !== BAIL) throw err;
      return fallback(resource);
    }
  };
}

/** FHIRPath truthiness for a rule: exactly `[true]` counts; an empty result or `[false]` does not. */
export function isTrue(result: unknown[]): boolean {
  return result.length === 1 && result[0] === true;
}

/** Whether `compileFhirPath(expression)` evaluates with the fast closures (outside odd inputs). */
export function isFastPath(expression: string): boolean {
  return explainFhirPath(expression).fast;
}

/** Why an expression does or does not take the fast path (for tests and diagnostics). */
export function explainFhirPath(expression: string): { fast: true } | { fast: false; reason: string } {
  const fast = compileFast(expression);
  return typeof fast === 'string' ? { fast: false, reason: fast } : { fast: true };
}

/**
 * The fast closures alone, without the fhirpath.js fallback: undefined when the expression is outside the
 * subset; the function returns undefined where the compiled path would hand the input to fhirpath.js.
 * For equivalence tests.
 */
export function compileFastOnly(
  expression: string,
): ((resource: object) => unknown[] | undefined) | undefined {
  const fast = compileFast(expression);
  if (typeof fast === 'string') return undefined;
  return onBail(fast, () => undefined);
}

/** How many evaluations of fast-compiled expressions were handed to fhirpath.js at run time (process-wide). */
export function runtimeFallbacks(): number {
  return fallbacks;
}

function compileSlow(expression: string): CompiledPath {
  const fn = compile(expression, r4, { async: false });
  return (resource: object) => fn(resource) as unknown[];
}
