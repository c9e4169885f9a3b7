/**
 * Parses a `Retry-After` header into a delay in milliseconds.
 *
 * RFC 9110 allows delta-seconds ("120") or an HTTP-date. Real servers also send values that are
 * neither: fractions ("1.5"), negatives, words, and epoch timestamps in the delta-seconds slot. Sluice
 * accepts the two standard forms, reads an integer above ~1e9 as an epoch timestamp (seconds, or
 * milliseconds above ~1e12), and treats anything else as absent (the caller's backoff applies).
 * Every result is clamped to [0, maxMs], so an absurd value can stall a flow for at most `maxMs`.
 */
export interface RetryAfterOptions {
  /** Upper bound on any delay; default 5 minutes. */
  readonly maxMs?: number;
}

export const DEFAULT_MAX_RETRY_AFTER_MS = 300_000;

export type RetryAfter =
  | {
      readonly kind: 'delay';
      readonly ms: number;
      readonly clamped: boolean;
      readonly form: 'seconds' | 'date' | 'epoch';
    }
  | { readonly kind: 'invalid' }
  | { readonly kind: 'absent' };

export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number,
  options: RetryAfterOptions = {},
): RetryAfter {
  const maxMs = options.maxMs ?? DEFAULT_MAX_RETRY_AFTER_MS;
  if (value === null || value === undefined) return { kind: 'absent' };
  const text = value.trim();
  if (text === '') return { kind: 'invalid' };
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n >= 1e12) return clamp(n - nowMs, maxMs, 'epoch');
    if (n >= 1e9) return clamp(n * 1000 - nowMs, maxMs, 'epoch');
    return clamp(n * 1000, maxMs, 'seconds');
  }
  // HTTP-date (IMF-fixdate, and the obsolete RFC 850 / asctime forms Date.parse also reads).
  if (/^[A-Za-z]{3},? /.test(text) || /GMT$/.test(text)) {
    const at = Date.parse(text);
    if (Number.isFinite(at)) return clamp(at - nowMs, maxMs, 'date');
  }
  return { kind: 'invalid' };
}

function clamp(ms: number, maxMs: number, form: 'seconds' | 'date' | 'epoch'): RetryAfter {
  if (ms < 0) return { kind: 'delay', ms: 0, clamped: true, form };
  if (ms > maxMs) return { kind: 'delay', ms: maxMs, clamped: true, form };
  return { kind: 'delay', ms, clamped: false, form };
}
