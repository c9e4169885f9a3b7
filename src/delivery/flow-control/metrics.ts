import { Counter, Gauge, type Registry } from 'prom-client';
import type { BreakerStateName } from './breaker.ts';
import type { DeliveryGate, GateEvent } from './gate.ts';

/**
 * Prometheus metrics of the delivery gates. Labels are only `endpoint`, `class` and fixed outcome
 * words — never anything from a record. Gauges read `stats()` of the tracked gates at scrape time;
 * counters are fed by the gates' events:
 *
 *   const metrics = flowMetrics(registry);
 *   const gate = createDeliveryGate(policy, { endpoint, onEvent: metrics.onEvent });
 *   metrics.track(gate);
 */
export interface FlowMetrics {
  /** Pass as (or call from) `DeliveryGateDeps.onEvent`. */
  readonly onEvent: (event: GateEvent) => void;
  /** Adds a gate to the scrape-time gauges; the returned function removes it. */
  track(gate: DeliveryGate): () => void;
}

export const BREAKER_STATE_VALUES: Record<BreakerStateName, number> = {
  closed: 0,
  open: 1,
  'half-open': 2,
  isolated: 3,
};

const byRegistry = new WeakMap<Registry, FlowMetrics>();

/** Registers the flow-control metrics on `registry` (once; later calls return the same instance). */
export function flowMetrics(registry: Registry): FlowMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const gates = new Set<DeliveryGate>();
  const registers = [registry];

  const gauge = (name: string, help: string, read: (gate: DeliveryGate) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ['endpoint'],
      registers,
      collect() {
        this.reset();
        for (const gate of gates) {
          const value = read(gate);
          if (value !== undefined && Number.isFinite(value)) this.set({ endpoint: gate.endpoint }, value);
        }
      },
    });
  };

  new Gauge({
    name: 'sluice_flow_queue_depth',
    help: 'Deliveries waiting for admission, per endpoint and priority class.',
    labelNames: ['endpoint', 'class'],
    registers,
    collect() {
      this.reset();
      for (const gate of gates) {
        for (const [cls, depth] of Object.entries(gate.stats().queueDepthByClass)) {
          this.set({ endpoint: gate.endpoint, class: cls }, depth);
        }
      }
    },
  });
  gauge(
    'sluice_flow_in_flight',
    'Deliveries currently running against the endpoint.',
    (g) => g.stats().inFlight,
  );
  gauge('sluice_flow_concurrency_limit', 'Current adaptive concurrency limit.', (g) => g.stats().limit);
  gauge('sluice_flow_tokens', 'Tokens in the endpoint rate-limit bucket.', (g) => g.stats().tokens);
  gauge('sluice_flow_rate_limit_rps', 'Requests per second currently allowed.', (g) => g.stats().rate);
  gauge(
    'sluice_flow_breaker_state',
    'Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 isolated.',
    (g) => BREAKER_STATE_VALUES[g.stats().breakerState],
  );
  gauge(
    'sluice_flow_quota_usage_ratio',
    'Share of the target daily API quota used, as last reported.',
    (g) => g.stats().quotaUsage,
  );
  gauge('sluice_flow_quota_held', '1 while non-interactive deliveries are held for quota.', (g) => {
    const mode = g.stats().quotaMode;
    return mode === 'hold' || mode === 'stop' ? 1 : 0;
  });

  const waitSeconds = new Counter({
    name: 'sluice_flow_wait_seconds_total',
    help: 'Time deliveries spent waiting for admission.',
    labelNames: ['endpoint', 'class'],
    registers,
  });
  const attempts = new Counter({
    name: 'sluice_flow_attempts_total',
    help: 'Delivery attempts by outcome (success, throttled, quota, server, client, circuit-open, aborted, other).',
    labelNames: ['endpoint', 'class', 'outcome'],
    registers,
  });
  const retries = new Counter({
    name: 'sluice_flow_retries_total',
    help: 'Retries scheduled, by what set the delay (retry-after, backoff, quota-hold).',
    labelNames: ['endpoint', 'class', 'source'],
    registers,
  });
  const rejected = new Counter({
    name: 'sluice_flow_rejected_total',
    help: 'Deliveries refused without being sent (FLOW_QUEUE_FULL, FLOW_CIRCUIT_OPEN).',
    labelNames: ['endpoint', 'class', 'code'],
    registers,
  });

  const metrics: FlowMetrics = {
    onEvent(event) {
      switch (event.type) {
        case 'dispatch':
          waitSeconds.inc({ endpoint: event.endpoint, class: event.priority }, event.waitMs / 1000);
          return;
        case 'attempt':
          attempts.inc({ endpoint: event.endpoint, class: event.priority, outcome: event.outcome });
          return;
        case 'retry':
          retries.inc({ endpoint: event.endpoint, class: event.priority, source: event.source });
          return;
        case 'rejected':
          rejected.inc({ endpoint: event.endpoint, class: event.priority, code: event.code });
          return;
        case 'quota':
        case 'breaker':
        case 'breaker-persist-failed':
        case 'breaker-restore-refused':
          return;
      }
    },
    track(gate) {
      gates.add(gate);
      return () => gates.delete(gate);
    },
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
