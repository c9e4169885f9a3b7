/** Timing helpers shared by the benchmarks: rates over repeated passes, percentiles, progress. */

/** Runs `pass` (one pass over `items` inputs) until at least `minMs` have passed; returns items per second. */
export async function rate(items: number, pass: () => unknown, minMs: number): Promise<number> {
  let done = 0;
  const started = performance.now();
  let elapsed = 0;
  do {
    const result = pass();
    if (result instanceof Promise) await result;
    done += items;
    elapsed = performance.now() - started;
  } while (elapsed < minMs);
  return (done / elapsed) * 1000;
}

/** The value at quantile `q` (0..1) of ascending `sorted` values (nearest rank). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

export function round(value: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** One line of progress on stderr (stdout is kept for results). */
export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
