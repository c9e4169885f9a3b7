import { type ErrorCode, errorSpec } from './catalog.ts';

/** Non-PHI context attached to an error: keys, counts, statuses, codes — never record content. */
export type ErrorDetails = Readonly<
  Record<string, string | number | boolean | readonly string[] | undefined>
>;

/**
 * The one error class of Sluice. It carries a stable catalog code, a message that says what happened
 * (naming keys, files, record references — never PHI), the operator action from the catalog, and the
 * underlying `cause`.
 */
export class SluiceError extends Error {
  override readonly name = 'SluiceError';
  readonly code: ErrorCode;
  readonly action: string;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: ErrorDetails } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.action = errorSpec(code).action;
    this.details = options.details ?? {};
  }

  /** A JSON-safe summary for `--json` output and logs. */
  toJSON(): { code: ErrorCode; message: string; action: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, action: this.action, details: this.details };
  }
}

export function isSluiceError(err: unknown): err is SluiceError {
  return err instanceof SluiceError;
}

/** Wraps anything thrown into a SluiceError, keeping a SluiceError as is. */
export function toSluiceError(err: unknown, fallback: ErrorCode = 'INTERNAL'): SluiceError {
  if (err instanceof SluiceError) return err;
  if (err instanceof Error && err.name === 'AbortError') {
    return new SluiceError('ABORTED', 'The operation was cancelled.', { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new SluiceError(fallback, message, { cause: err });
}
