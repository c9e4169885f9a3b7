/**
 * The sandbox's own request log: when each request arrived and how it was answered. Tests measure
 * achieved request rates and retry behaviour from it. It holds paths without query strings and no
 * bodies, and is bounded.
 */
export interface RequestLogEntry {
  /** Arrival time, milliseconds since the epoch (fractional, from performance.timeOrigin + now()). */
  readonly at: number;
  readonly method: string;
  readonly path: string;
  status: number;
  durationMs: number;
  /** The fault kind applied to the request, if any. */
  fault?: string;
}

export class RequestLog {
  readonly #entries: RequestLogEntry[] = [];
  readonly #capacity: number;
  #dropped = 0;

  constructor(capacity = 200_000) {
    this.#capacity = capacity;
  }

  start(method: string, path: string): RequestLogEntry {
    const entry: RequestLogEntry = {
      at: performance.timeOrigin + performance.now(),
      method,
      path,
      status: 0,
      durationMs: 0,
    };
    this.#entries.push(entry);
    if (this.#entries.length > this.#capacity) {
      this.#entries.shift();
      this.#dropped++;
    }
    return entry;
  }

  entries(filter: { since?: number; pathPrefix?: string } = {}): readonly RequestLogEntry[] {
    return this.#entries.filter(
      (e) =>
        (filter.since === undefined || e.at >= filter.since) &&
        (filter.pathPrefix === undefined || e.path.startsWith(filter.pathPrefix)),
    );
  }

  get dropped(): number {
    return this.#dropped;
  }

  clear(): void {
    this.#entries.length = 0;
    this.#dropped = 0;
  }
}
