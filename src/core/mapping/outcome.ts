import type { ErrorCode } from '../errors/index.ts';

/** One problem found in a record, located by a FHIRPath-like path. Messages never quote record values. */
export interface Issue {
  readonly severity: 'error' | 'warning' | 'information';
  readonly code: ErrorCode | string;
  readonly path: string;
  readonly message: string;
}

/** A stage's verdict on one record: a value, never an exception. */
export type Outcome<T> =
  | { readonly ok: true; readonly value: T; readonly warnings: readonly Issue[] }
  | { readonly ok: false; readonly code: ErrorCode; readonly issues: readonly Issue[] };

export function ok<T>(value: T, warnings: readonly Issue[] = []): Outcome<T> {
  return { ok: true, value, warnings };
}

export function fail<T>(code: ErrorCode, issues: readonly Issue[]): Outcome<T> {
  return { ok: false, code, issues };
}

export function issue(code: ErrorCode | string, path: string, message: string): Issue {
  return { severity: 'error', code, path, message };
}

export function warning(code: string, path: string, message: string): Issue {
  return { severity: 'warning', code, path, message };
}
