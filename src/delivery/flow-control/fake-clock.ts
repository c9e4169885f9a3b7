import { setImmediate as macrotask } from 'node:timers/promises';
import type { Clock } from './clock.ts';

/**
 * A manual clock for tests: time moves only through `advance`, which fires due timers in order and
 * lets the promise chains they start settle before moving on. Test-only.
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers: { at: number; seq: number; fn: () => void }[] = [];

  constructor(start = Date.parse('2025-01-15T09:00:00.000Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  schedule(ms: number, fn: () => void): () => void {
    const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(timer);
    return () => {
      const index = this.#timers.indexOf(timer);
      if (index >= 0) this.#timers.splice(index, 1);
    };
  }

  /** Pending timers (for asserting that nothing busy-waits). */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await settle();
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers[0];
      if (!next || next.at > end) break;
      this.#timers.shift();
      this.#now = Math.max(this.#now, next.at);
      next.fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets pending promise callbacks run (several rounds, for chains of awaits). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await macrotask();
}
