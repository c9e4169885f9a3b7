import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HttpStatusError } from '../../adapters/http/http-error.ts';
import { FakeClock } from './fake-clock.ts';
import { createDeliveryGate } from './gate.ts';
import { flowMetrics } from './metrics.ts';
import { parseThrottlePolicy } from './policy.ts';

async function series(registry: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const v of metric.values as { labels: Record<string, string | number>; value: number }[]) {
      const labels = Object.entries(v.labels)
        .map(([k, x]) => `${k}=${x}`)
        .join(',');
      out.set(`${metric.name}{${labels}}`, v.value);
    }
  }
  return out;
}

describe('flow metrics', () => {
  it('exposes gate stats as gauges and gate events as counters, labelled by endpoint and class only', async () => {
    const registry = new Registry();
    const metrics = flowMetrics(registry);
    expect(flowMetrics(registry)).toBe(metrics);
    const clock = new FakeClock();
    const gate = createDeliveryGate(parseThrottlePolicy({ rate: 1, burst: 1 }), {
      endpoint: 'crm-upsert',
      clock,
      random: () => 0,
      onEvent: metrics.onEvent,
    });
    const untrack = metrics.track(gate);

    let calls = 0;
    const first = gate.run('interactive', async (ctx) => {
      calls++;
      if (calls === 1)
        throw new HttpStatusError({ status: 429, transient: true, retryAfterMs: 2000, what: 'CRM' });
      ctx.observe({ 'Sforce-Limit-Info': 'api-usage=500/1000' });
      return 'ok';
    });
    const queued = gate.run('backfill', async () => 'ok');
    await clock.advance(10);
    let s = await series(registry);
    expect(s.get('sluice_flow_queue_depth{endpoint=crm-upsert,class=backfill}')).toBe(1);
    expect(s.get('sluice_flow_breaker_state{endpoint=crm-upsert}')).toBe(0);
    expect(s.get('sluice_flow_attempts_total{endpoint=crm-upsert,class=interactive,outcome=throttled}')).toBe(
      1,
    );
    expect(s.get('sluice_flow_retries_total{endpoint=crm-upsert,class=interactive,source=retry-after}')).toBe(
      1,
    );
    expect(s.get('sluice_flow_rate_limit_rps{endpoint=crm-upsert}')).toBe(1);

    await clock.advance(5000);
    await Promise.all([first, queued]);
    s = await series(registry);
    expect(s.get('sluice_flow_attempts_total{endpoint=crm-upsert,class=interactive,outcome=success}')).toBe(
      1,
    );
    expect(s.get('sluice_flow_attempts_total{endpoint=crm-upsert,class=backfill,outcome=success}')).toBe(1);
    expect(s.get('sluice_flow_quota_usage_ratio{endpoint=crm-upsert}')).toBe(0.5);
    expect(s.get('sluice_flow_quota_held{endpoint=crm-upsert}')).toBe(0);
    // The backfill call waited behind the 2 s pause and the retry.
    expect(
      s.get('sluice_flow_wait_seconds_total{endpoint=crm-upsert,class=backfill}'),
    ).toBeGreaterThanOrEqual(2);

    await expect(gate.run('nope', async () => 'x')).rejects.toMatchObject({ code: 'FLOW_PRIORITY_UNKNOWN' });
    const labelNames = new Set(
      (await registry.getMetricsAsJSON()).flatMap((m) =>
        (m.values as { labels: Record<string, unknown> }[]).flatMap((v) => Object.keys(v.labels)),
      ),
    );
    for (const l of labelNames) expect(['class', 'code', 'endpoint', 'outcome', 'source']).toContain(l);

    untrack();
    s = await series(registry);
    expect(s.has('sluice_flow_in_flight{endpoint=crm-upsert}')).toBe(false);
    gate.close();
  });
});
