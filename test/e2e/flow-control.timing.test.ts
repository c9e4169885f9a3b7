import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startCrmSandboxThread } from '../../src/delivery/flow-control/sandbox-thread.ts';
import { loadFlow } from '../../src/engine/config/load-flow.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { buildFlowRuntime, flowRunOptions } from '../../src/engine/runtime/build-flow.ts';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';
import { exampleFlowText } from '../../src/testkit/example-flow.ts';
import { REDIS_SKIP, TEST_REDIS_URL, testKey } from '../../src/testkit/redis.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** The example flow reading Organizations only, with small batches and the given throttle block. */
async function setup(throttle: string, maxRecords = 5, crmUrl?: string) {
  const ehr: EhrSandbox = await startEhrSandbox({
    seed: [join(SAMPLE_DATA_DIR, 'directory', 'Organization.ndjson.gz')],
  });
  const crm: CrmSandbox = await startCrmSandbox();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-throttle-'));
  cleanup.push(
    () => rmSync(dir, { recursive: true, force: true }),
    () => ehr.close(),
    () => crm.close(),
  );
  const text = exampleFlowText()
    .replace('resources: [Organization, Practitioner, Patient]', 'resources: [Organization]')
    .replace(/ {2}consent:\n(?: {4}.*\n)+/, '')
    // Its allowlist names the consent recipient; these tests are about other things.
    .replace(/ {2}policy:\n(?: {4}.*\n)+/, '')
    .replace(/ {2}throttle:\n(?: {4}.*\n)+/, throttle)
    .replace('maxRecords: 200', `maxRecords: ${maxRecords}`)
    // One page for the whole directory: the gate, not page turns, sets the pace.
    .replace('pageSize: 200', 'pageSize: 1000');
  writeFileSync(join(dir, 'flow.yaml'), text);
  const env = {
    SLUICE_EHR_URL: ehr.url,
    SLUICE_CRM_URL: crmUrl ?? crm.url,
    SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
    SLUICE_STATE_DIR: join(dir, 'state'),
  };
  const open = async () => {
    const flow = loadFlow(join(dir, 'flow.yaml'), { env });
    const runtime = await buildFlowRuntime(flow);
    return {
      runtime,
      run: () => runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) }),
    };
  };
  return { ehr, crm, open };
}

const upserts = (crm: CrmSandbox) =>
  crm.requests.entries().filter((e) => e.method === 'PATCH' && e.path.includes('/composite/sobjects/'));

describe('flow control on a real run', () => {
  it('keeps the achieved request rate at the ceiling and never above the burst', async () => {
    const rate = 20;
    // The burst also absorbs the short pause between parents and children, so the ceiling is held.
    const burst = 8;
    // The CRM runs on its own thread, so its arrival times are not skewed by the pipeline's event loop.
    const thread = await startCrmSandboxThread();
    cleanup.push(() => thread.close());
    // Concurrency bounds high enough that the rate, not the adaptive limit, is what binds.
    const { open } = await setup(
      `  throttle:\n    rate: ${rate}\n    burst: ${burst}\n    concurrency: { min: 4, max: 16, initial: 8 }\n`,
      5,
      thread.url,
    );
    const { runtime, run } = await open();
    const summary = await run();
    await runtime.close();
    expect(summary.status).toBe('succeeded');
    const times = (await thread.apiRequests())
      .filter((e) => e.method === 'PATCH' && e.path.includes('/composite/sobjects/'))
      .map((e) => e.at);
    expect(times.length).toBeGreaterThan(80);
    // The first requests of a run also open the client's connections, which bunches their arrivals
    // by the connection set-up time; windows are checked from the moment the pool is warm (300 ms in).
    // Arrival times carry one grant interval of scheduling jitter at a window's edge.
    const slack = 1000 / rate;
    const warm = (times[0] as number) + 300;
    for (let i = 0; i < times.length; i++) {
      const start = times[i] as number;
      if (start < warm) continue;
      const inWindow = times.filter((t) => t >= start && t < start + 1000 - slack).length;
      expect(inWindow).toBeLessThanOrEqual(rate + burst);
    }
    // The steady rate, measured past the opening burst, is the ceiling (±2%).
    const steady = times.filter((t) => t >= warm + 1000);
    expect(steady.length).toBeGreaterThan(50);
    const achieved = (steady.length - 1) / (((steady.at(-1) as number) - (steady[0] as number)) / 1000);
    expect(Math.abs(achieved - rate) / rate).toBeLessThanOrEqual(0.02);
  }, 60_000);

  it.skipIf(REDIS_SKIP !== undefined)(
    'keeps two flows sending to one org within their shared rate together (Redis)',
    async () => {
      const shared = 10;
      const thread = await startCrmSandboxThread();
      cleanup.push(() => thread.close());
      // Each flow alone may send far faster; only the rate they share binds.
      const throttle = `  throttle:\n    rate: 1000\n    burst: 100\n    concurrency: { min: 4, max: 16, initial: 8 }\n    shared: { redis: "${TEST_REDIS_URL}", key: "${testKey('sluice:rate:test')}", rate: ${shared}, burst: 1 }\n`;
      const one = await (await setup(throttle, 20, thread.url)).open();
      const two = await (await setup(throttle, 20, thread.url)).open();
      const [a, b] = await Promise.all([one.run(), two.run()]);
      await Promise.all([one.runtime.close(), two.runtime.close()]);
      expect([a.status, b.status]).toEqual(['succeeded', 'succeeded']);
      const times = (await thread.apiRequests())
        .filter((e) => e.method === 'PATCH' && e.path.includes('/composite/sobjects/'))
        .map((e) => e.at)
        .sort((x, y) => x - y);
      expect(times.length).toBeGreaterThan(30);
      // Together, never more than the shared rate (and its burst) in any second, one interval of
      // scheduling jitter allowed at a window's edge; and together they keep it up.
      const slack = 1000 / shared;
      for (const start of times) {
        const inWindow = times.filter((t) => t >= start && t < start + 1000 - slack).length;
        expect(inWindow).toBeLessThanOrEqual(shared + 1);
      }
      const achieved = (times.length - 1) / (((times.at(-1) as number) - (times[0] as number)) / 1000);
      expect(achieved).toBeGreaterThan(shared * 0.85);
      expect(achieved).toBeLessThanOrEqual(shared * 1.05);
    },
    60_000,
  );

  it('completes through latency, 5xx bursts and 429s with nothing lost or duplicated', async () => {
    const { crm, ehr, open } = await setup(
      '  throttle:\n    rate: 200\n    burst: 50\n    retry: { maxAttempts: 8, baseMs: 20, maxMs: 500 }\n    breaker: { consecutiveFailures: 50, halfOpenAfterMs: 1000 }\n',
      20,
    );
    crm.faults.add({ fault: { kind: 'latency', ms: 40 }, method: 'PATCH', times: 10 });
    crm.faults.add({ fault: { kind: 'status', status: 503 }, method: 'PATCH', times: 3 });
    crm.faults.add({ fault: { kind: 'rate-limit', retryAfter: '1' }, method: 'PATCH', times: 2 });
    crm.faults.add({ fault: { kind: 'status', status: 500 }, method: 'PATCH', times: 2 });
    const { runtime, run } = await open();
    const summary = await run();
    await runtime.close();
    expect(summary.status).toBe('succeeded');
    const statuses = upserts(crm).map((e) => e.status);
    expect(statuses.filter((s) => s === 503)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(2);
    // Every organisation is there exactly once.
    const accounts = crm.records('Account').map((a) => String(a.External_ID_vod__c));
    expect(new Set(accounts).size).toBe(accounts.length);
    expect(accounts.length).toBe(ehr.repo.recordCount('Organization'));
    expect(summary.quarantined).toBe(0);
  }, 60_000);

  it('a breaker opened by 5xx stays open across a restart, then closes after the cool-down', async () => {
    const { crm, ehr, open } = await setup(
      '  throttle:\n    rate: 200\n    burst: 50\n    retry: { maxAttempts: 2, baseMs: 10, maxMs: 50 }\n    breaker: { consecutiveFailures: 2, halfOpenAfterMs: 1500 }\n',
      50,
    );
    crm.faults.add({ fault: { kind: 'status', status: 500 }, method: 'PATCH' });
    const first = await open();
    const failed = await first.run();
    await first.runtime.close();
    expect(failed.status).toBe('failed');
    expect(['FLOW_CIRCUIT_OPEN', 'TGT_HTTP_ERROR']).toContain(failed.error?.code);
    const hitsWhileFailing = upserts(crm).length;

    // A restarted process remembers the open breaker and sends nothing.
    const second = await open();
    const refused = await second.run();
    await second.runtime.close();
    expect(refused.error?.code).toBe('FLOW_CIRCUIT_OPEN');
    expect(upserts(crm).length).toBe(hitsWhileFailing);

    // The target recovers; after the cool-down a probe closes the breaker and the run completes.
    for (const rule of crm.faults.list()) crm.faults.remove(rule.id);
    await new Promise((r) => setTimeout(r, 1600));
    const third = await open();
    const recovered = await third.run();
    await third.runtime.close();
    expect(recovered.status).toBe('succeeded');
    expect(crm.records('Account').length).toBe(ehr.repo.recordCount('Organization'));
  }, 60_000);
});
