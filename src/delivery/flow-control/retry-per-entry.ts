import { SluiceError } from '../../core/errors/index.ts';
import type { WriteResult } from '../../core/ports/target.ts';
import { type Clock, sleep, systemClock } from './clock.ts';
import { backoffMs } from './failure.ts';
import type { ThrottlePolicy } from './policy.ts';

export interface RetryPerEntryOptions<R> {
  /** Whether one entry's result asks for that entry to be sent again (a per-entry 429, a row lock). */
  readonly isRetryable: (result: R) => boolean;
  /** `maxAttempts` bounds the rounds; base/max/jitter shape the wait between rounds. */
  readonly retry: Pick<ThrottlePolicy['retry'], 'maxAttempts' | 'baseMs' | 'maxMs' | 'jitter'>;
  readonly random?: () => number;
  readonly clock?: Clock;
  readonly signal?: AbortSignal;
}

/** A Veeva/Salesforce write result that should be sent again (see VeevaTarget's transient entry codes). */
export function isRetryWriteResult(result: WriteResult): boolean {
  return result.status === 'retry';
}

/**
 * Composite answers (sObject Collections) can be 200 with some entries refused for transient reasons.
 * This re-submits only those entries, with backoff between rounds, and returns one result per entry
 * in the original order: the final one for each. Entries still retryable after the last round keep
 * their retryable result, so the caller leaves them pending rather than losing them. Each `submit`
 * call is one request, so it belongs inside `gate.run` (which handles whole-request failures).
 */
export async function retryPerEntry<E, R>(
  entries: readonly E[],
  submit: (batch: readonly E[], round: number) => Promise<readonly R[]>,
  options: RetryPerEntryOptions<R>,
): Promise<R[]> {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const results = new Array<R | undefined>(entries.length).fill(undefined);
  let pending = entries.map((_, index) => index);
  for (let round = 1; pending.length > 0; round++) {
    if (round > 1) await sleep(clock, backoffMs(round - 1, options.retry, random), options.signal);
    const batch = pending.map((index) => entries[index] as E);
    const answer = await submit(batch, round);
    if (answer.length !== batch.length) {
      throw new SluiceError(
        'TGT_BAD_RESPONSE',
        `A batch of ${batch.length} entries was answered with ${answer.length} results (round ${round}).`,
        { details: { entries: batch.length, results: answer.length, round } },
      );
    }
    const again: number[] = [];
    answer.forEach((result, i) => {
      const index = pending[i]!;
      results[index] = result;
      if (options.isRetryable(result)) again.push(index);
    });
    if (round >= options.retry.maxAttempts) break;
    pending = again;
  }
  return results as R[];
}
