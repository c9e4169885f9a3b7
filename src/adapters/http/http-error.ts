/**
 * An HTTP answer an adapter did not expect. It carries what a retry policy needs (status, whether it
 * is transient, the server's requested delay) and a short, non-PHI summary of the body (error codes
 * only, never record content).
 */
export class HttpStatusError extends Error {
  override readonly name = 'HttpStatusError';
  readonly status: number;
  readonly transient: boolean;
  /** The server-requested delay before retrying, already parsed and clamped. */
  readonly retryAfterMs: number | undefined;
  /** Error codes from the body (OperationOutcome issue codes, Salesforce errorCodes, OAuth error). */
  readonly codes: readonly string[];

  constructor(init: {
    status: number;
    transient: boolean;
    retryAfterMs?: number | undefined;
    codes?: readonly string[];
    what: string;
  }) {
    super(
      `${init.what} answered HTTP ${init.status}${init.codes?.length ? ` (${init.codes.join(', ')})` : ''}`,
    );
    this.status = init.status;
    this.transient = init.transient;
    this.retryAfterMs = init.retryAfterMs;
    this.codes = init.codes ?? [];
  }
}

/** A request that never got an HTTP answer (refused, reset, dropped, timed out). Always transient. */
export class NetworkError extends Error {
  override readonly name = 'NetworkError';
  readonly transient = true;
}

export function isTransient(err: unknown): boolean {
  return (err instanceof HttpStatusError || err instanceof NetworkError) && err.transient;
}
