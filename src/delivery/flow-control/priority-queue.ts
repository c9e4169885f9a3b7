/**
 * A weighted fair queue over named classes (virtual finish times, as in WFQ): while several classes wait, each gets
 * dispatches in proportion to its weight, so `interactive` (4) goes first four times out of five but
 * `backfill` (1) is never starved. A class that was idle rejoins at the current virtual time instead of
 * cashing in turns it did not use. Within a class, items leave in `seq` order, so a retried call keeps
 * its place ahead of later arrivals.
 */
export class WeightedQueue<T> {
  readonly #weights: ReadonlyMap<string, number>;
  readonly #queues = new Map<string, { seq: number; item: T }[]>();
  readonly #pass = new Map<string, number>();
  #virtualTime = 0;
  #size = 0;

  constructor(weights: Readonly<Record<string, number>>) {
    this.#weights = new Map(Object.entries(weights));
    for (const name of this.#weights.keys()) {
      this.#queues.set(name, []);
      this.#pass.set(name, 0);
    }
  }

  has(cls: string): boolean {
    return this.#weights.has(cls);
  }

  get size(): number {
    return this.#size;
  }

  sizeOf(cls: string): number {
    return this.#queues.get(cls)?.length ?? 0;
  }

  /** Classes that have items waiting. */
  waitingClasses(): string[] {
    return [...this.#queues].filter(([, q]) => q.length > 0).map(([name]) => name);
  }

  push(cls: string, item: T, seq: number): void {
    const queue = this.#queues.get(cls);
    if (!queue) throw new RangeError(`unknown class ${cls}`);
    if (queue.length === 0) this.#pass.set(cls, Math.max(this.#pass.get(cls) ?? 0, this.#virtualTime));
    let i = queue.length;
    while (i > 0 && queue[i - 1]!.seq > seq) i--;
    queue.splice(i, 0, { seq, item });
    this.#size++;
  }

  /** Removes a specific item (an aborted caller); returns whether it was queued. */
  remove(cls: string, item: T): boolean {
    const queue = this.#queues.get(cls);
    const index = queue?.findIndex((e) => e.item === item) ?? -1;
    if (!queue || index < 0) return false;
    queue.splice(index, 1);
    this.#size--;
    return true;
  }

  /** The class that would go next among those `eligible`, without removing anything. */
  peekClass(eligible: (cls: string) => boolean): string | undefined {
    let best: string | undefined;
    let bestPass = Number.POSITIVE_INFINITY;
    let bestSeq = Number.POSITIVE_INFINITY;
    for (const [cls, queue] of this.#queues) {
      const head = queue[0];
      if (!head || !eligible(cls)) continue;
      // Smallest virtual finish time (start + 1/weight), as in weighted fair queueing.
      const pass = (this.#pass.get(cls) ?? 0) + 1 / (this.#weights.get(cls) ?? 1);
      if (pass < bestPass || (pass === bestPass && head.seq < bestSeq)) {
        best = cls;
        bestPass = pass;
        bestSeq = head.seq;
      }
    }
    return best;
  }

  /** Takes the next item of the class `peekClass` names. */
  shift(eligible: (cls: string) => boolean): { readonly cls: string; readonly item: T } | undefined {
    const cls = this.peekClass(eligible);
    if (cls === undefined) return undefined;
    const entry = this.#queues.get(cls)!.shift()!;
    this.#size--;
    const pass = this.#pass.get(cls) ?? 0;
    this.#virtualTime = Math.max(this.#virtualTime, pass);
    this.#pass.set(cls, pass + 1 / (this.#weights.get(cls) ?? 1));
    return { cls, item: entry.item };
  }
}
