/**
 * The org's daily API request allocation: every API call counts in a rolling 24-hour window. Counts
 * are kept per minute, so memory stays bounded whatever the limit.
 */
export interface QuotaState {
  readonly used: number;
  readonly max: number;
}

const WINDOW_MINUTES = 24 * 60;

export class RollingQuota {
  readonly #now: () => Date;
  readonly #buckets = new Map<number, number>();
  #max: number;

  constructor(max: number, now: () => Date) {
    this.#max = max;
    this.#now = now;
  }

  #minute(): number {
    return Math.floor(this.#now().getTime() / 60_000);
  }

  /** Requests counted in the 24 hours up to now. */
  used(): number {
    const current = this.#minute();
    let total = 0;
    for (const [minute, count] of this.#buckets) {
      if (minute <= current - WINDOW_MINUTES) this.#buckets.delete(minute);
      else total += count;
    }
    return total;
  }

  state(): QuotaState {
    return { used: this.used(), max: this.#max };
  }

  /** Counts one request if the allocation has room; a refused request is not counted. */
  consume(): { readonly allowed: boolean } & QuotaState {
    const used = this.used();
    if (used >= this.#max) return { allowed: false, used, max: this.#max };
    const minute = this.#minute();
    this.#buckets.set(minute, (this.#buckets.get(minute) ?? 0) + 1);
    return { allowed: true, used: used + 1, max: this.#max };
  }

  /** Test control: sets the limit and/or replaces the window's count with `used` requests made now. */
  set(change: { readonly max?: number; readonly used?: number }): QuotaState {
    if (change.max !== undefined) this.#max = change.max;
    if (change.used !== undefined) {
      this.#buckets.clear();
      if (change.used > 0) this.#buckets.set(this.#minute(), change.used);
    }
    return this.state();
  }
}
