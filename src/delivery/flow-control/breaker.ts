import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
  type IBreaker,
  SamplingBreaker,
} from 'cockatiel';
import { z } from 'zod';
import { SluiceError } from '../../core/errors/index.ts';
import type { ThrottlePolicy } from './policy.ts';

/**
 * Where breaker state survives a restart, keyed by endpoint name. The state is cockatiel's own
 * export (`toJSON()`), treated as opaque here and validated on load.
 */
export interface BreakerStateStore {
  load(endpoint: string): unknown;
  save(endpoint: string, state: unknown): void;
}

export class MemoryBreakerStateStore implements BreakerStateStore {
  readonly #states = new Map<string, string>();

  load(endpoint: string): unknown {
    const text = this.#states.get(endpoint);
    return text === undefined ? undefined : JSON.parse(text);
  }

  save(endpoint: string, state: unknown): void {
    this.#states.set(endpoint, JSON.stringify(state));
  }
}

/**
 * Breaker state in SQLite (table `flow_breaker_state`). Open it on its own file, or hand it the
 * state store's database so breaker state lives beside checkpoints.
 */
export class SqliteBreakerStateStore implements BreakerStateStore {
  readonly #db: DatabaseSync;
  readonly #owned: boolean;

  private constructor(db: DatabaseSync, owned: boolean) {
    this.#db = db;
    this.#owned = owned;
    db.exec(`CREATE TABLE IF NOT EXISTS flow_breaker_state (
      endpoint TEXT PRIMARY KEY,
      state TEXT NOT NULL,
      updated_at TEXT NOT NULL
    ) STRICT`);
  }

  /** Opens (creating if needed) a database file, or `:memory:`. */
  static open(path: string): SqliteBreakerStateStore {
    let db: DatabaseSync;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      db = new DatabaseSync(path, { timeout: 5000 });
      db.exec('PRAGMA journal_mode = WAL;');
      return new SqliteBreakerStateStore(db, true);
    } catch (err) {
      throw new SluiceError('STORE_OPEN_FAILED', `Cannot open the breaker state store at ${path}.`, {
        cause: err,
        details: { path },
      });
    }
  }

  /** Uses an already open database (not closed by `close()`). */
  static using(db: DatabaseSync): SqliteBreakerStateStore {
    return new SqliteBreakerStateStore(db, false);
  }

  load(endpoint: string): unknown {
    const row = this.#db.prepare('SELECT state FROM flow_breaker_state WHERE endpoint = ?').get(endpoint) as
      | { state: string }
      | undefined;
    if (!row) return undefined;
    try {
      return JSON.parse(row.state);
    } catch {
      return { unreadable: true };
    }
  }

  save(endpoint: string, state: unknown): void {
    this.#db
      .prepare(
        `INSERT INTO flow_breaker_state (endpoint, state, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (endpoint) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
      )
      .run(endpoint, JSON.stringify(state), new Date().toISOString());
  }

  close(): void {
    if (this.#owned) this.#db.close();
  }
}

export type BreakerStateName = 'closed' | 'open' | 'half-open' | 'isolated';

const STATE_NAMES: Record<CircuitState, BreakerStateName> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'isolated',
};

/** The parts of cockatiel's export we rely on; anything else is refused. */
const OwnStateSchema = z.union([
  z.object({ value: z.literal(CircuitState.Closed) }),
  z.object({
    value: z.literal(CircuitState.Open),
    openedAt: z.number().finite().min(0),
    attemptNo: z.number().int().min(1).max(1_000_000),
  }),
]);
const SamplingStateSchema = z.strictObject({
  windows: z.array(
    z.strictObject({
      startedAt: z.number().finite(),
      failures: z.number().int().min(0),
      successes: z.number().int().min(0),
    }),
  ),
  currentWindow: z.number().int().min(0),
  currentFailures: z.number().int().min(0),
  currentSuccesses: z.number().int().min(0),
});

export type BreakerEvent =
  | { readonly type: 'state'; readonly state: BreakerStateName }
  | { readonly type: 'restored'; readonly state: BreakerStateName }
  | { readonly type: 'restore-refused' }
  | { readonly type: 'persist-failed'; readonly error: string };

export interface PersistentBreakerOptions {
  readonly endpoint: string;
  readonly policy: ThrottlePolicy['breaker'];
  /** Which errors count as the endpoint failing; others pass through as successes. */
  readonly isFailure: (err: unknown) => boolean;
  readonly store?: BreakerStateStore;
  readonly onEvent?: (event: BreakerEvent) => void;
}

/**
 * A cockatiel circuit breaker whose state outlives the process: it starts from the stored state and
 * saves on every transition, so a restart while the target is failing keeps the circuit open until the
 * cool-down ends, and then lets one probe through. A stored state that does not validate is not
 * trusted either way: the breaker starts open with its cool-down already over, so the first call is a
 * single probe. Cool-downs run on the wall clock (cockatiel reads `Date.now()`).
 */
export class PersistentBreaker {
  readonly endpoint: string;
  readonly #policy: CircuitBreakerPolicy;
  readonly #options: PersistentBreakerOptions;

  constructor(options: PersistentBreakerOptions) {
    this.endpoint = options.endpoint;
    this.#options = options;
    const breaker = makeBreaker(options.policy);
    const initialState = this.#restore(breaker);
    this.#policy = circuitBreaker(handleWhen(options.isFailure), {
      breaker,
      halfOpenAfter: options.policy.halfOpenAfterMs,
      ...(initialState === undefined ? {} : { initialState }),
    });
    this.#policy.onStateChange((state) => {
      this.save();
      options.onEvent?.({ type: 'state', state: STATE_NAMES[state] });
    });
  }

  get state(): BreakerStateName {
    return STATE_NAMES[this.#policy.state];
  }

  /** While open: milliseconds until a probe may go out (0 when it may now); undefined otherwise. */
  retryInMs(now = Date.now()): number | undefined {
    if (this.#policy.state !== CircuitState.Open) return undefined;
    const parsed = OwnStateSchema.safeParse((this.#policy.toJSON() as { ownState?: unknown }).ownState);
    if (!parsed.success || parsed.data.value !== CircuitState.Open) return 0;
    return Math.max(0, parsed.data.openedAt + this.#options.policy.halfOpenAfterMs - now);
  }

  /** Runs `fn` through the breaker; throws cockatiel's BrokenCircuitError while open. */
  execute<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.#policy.execute(fn, signal);
  }

  /** Saves the current state (also done on every transition). */
  save(): void {
    const store = this.#options.store;
    if (!store) return;
    try {
      store.save(this.endpoint, this.#policy.toJSON());
    } catch (err) {
      // The breaker keeps working in memory; losing persistence must not stop deliveries.
      this.#options.onEvent?.({ type: 'persist-failed', error: err instanceof Error ? err.name : 'unknown' });
    }
  }

  #restore(breaker: IBreaker): unknown {
    const stored = this.#options.store?.load(this.endpoint);
    if (stored === undefined) return undefined;
    const own = OwnStateSchema.safeParse((stored as { ownState?: unknown } | null)?.ownState);
    if (!own.success) {
      this.#options.onEvent?.({ type: 'restore-refused' });
      return {
        ownState: { value: CircuitState.Open, openedAt: 0, attemptNo: 1 },
        breakerState: breaker.state,
      };
    }
    const ownState =
      own.data.value === CircuitState.Open
        ? { ...own.data, openedAt: Math.min(own.data.openedAt, Date.now()) }
        : own.data;
    const counters = (stored as { breakerState?: unknown }).breakerState;
    const breakerState = compatibleCounters(breaker, counters) ? counters : breaker.state;
    this.#options.onEvent?.({ type: 'restored', state: STATE_NAMES[ownState.value] });
    return { ownState, breakerState };
  }
}

function makeBreaker(policy: ThrottlePolicy['breaker']): IBreaker {
  if (policy.failureRatio !== undefined) {
    return new SamplingBreaker({
      threshold: policy.failureRatio,
      duration: policy.samplingWindowMs,
      minimumRps: policy.minimumRps,
    });
  }
  return new ConsecutiveBreaker(policy.consecutiveFailures ?? 5);
}

/** Stored failure counters are reused only when they fit the configured breaker (policy may have changed). */
function compatibleCounters(breaker: IBreaker, counters: unknown): boolean {
  if (breaker instanceof ConsecutiveBreaker) {
    return typeof counters === 'number' && Number.isInteger(counters) && counters >= 0;
  }
  const parsed = SamplingStateSchema.safeParse(counters);
  const current = SamplingStateSchema.safeParse(breaker.state);
  return (
    parsed.success &&
    current.success &&
    parsed.data.windows.length === current.data.windows.length &&
    parsed.data.currentWindow < parsed.data.windows.length
  );
}
