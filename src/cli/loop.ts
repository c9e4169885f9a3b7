/**
 * What a command that loops (`sluice run`, `sluice ingest`) needs from the process: a signal that
 * SIGINT or SIGTERM abort, and the pause between cycles, cut short by them.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoopControl {
  /** Aborted by SIGINT or SIGTERM: stop after what is in hand. */
  readonly signal: AbortSignal;
  /** Waits the interval; false when a signal ended the wait (the loop ends). */
  pause(): Promise<boolean>;
  /** Stops listening for the signals. */
  dispose(): void;
}

export function loopControl(intervalSeconds: number): LoopControl {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: controller.signal,
    async pause() {
      try {
        await sleep(intervalSeconds * 1000, undefined, { signal: controller.signal });
        return true;
      } catch {
        return false;
      }
    },
    dispose() {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}
