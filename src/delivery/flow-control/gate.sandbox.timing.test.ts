import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type JsonResponse, requestJson } from '../../adapters/http/request.ts';
import type { SluiceError } from '../../core/errors/index.ts';
import { apiPath, crmToken, setCrmLimits } from '../../sandbox/crm/testing.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import { SqliteBreakerStateStore } from './breaker.ts';
import { type AttemptContext, createDeliveryGate, type DeliveryGate } from './gate.ts';
import { parseThrottlePolicy, type ThrottlePolicyInput } from './policy.ts';
import { type CrmSandboxThread, startCrmSandboxThread } from './sandbox-thread.ts';

/**
 * The gate against the CRM sandbox over real HTTP: every number below is measured from the sandbox's
 * own request log, not from the gate's view of itself. The sandbox runs on its own thread so its
 * arrival times are not delayed by this thread's work (see sandbox-thread.ts).
 */

interface Org {
  readonly id: string;
  readonly name: string;
}

/** Synthea provider-directory organizations (synthetic, CC0), upserted as HCO Accounts. */
function loadOrganizations(): Org[] {
  const shared = sharedDataDir();
  const sharedFile = shared && join(shared, 'synthea', 'directory-v3', 'Organization.ndjson.gz');
  const file =
    sharedFile && existsSync(sharedFile)
      ? sharedFile
      : join(SAMPLE_DATA_DIR, 'directory', 'Organization.ndjson.gz');
  return gunzipSync(readFileSync(file))
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { id: string; name: string })
    .map((o) => ({ id: o.id, name: o.name }));
}

let sandbox: CrmSandboxThread;
let token: string;
let orgs: Org[];
let dir: string;

beforeAll(async () => {
  orgs = loadOrganizations();
  sandbox = await startCrmSandboxThread();
  token = await crmToken(sandbox);
  dir = mkdtempSync(join(tmpdir(), 'sluice-gate-'));
});

afterAll(async () => {
  await sandbox?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await sandbox.clearFaults();
  await sandbox.clearRecords();
  await sandbox.clearRequests();
});

function upsertAccount(org: Org): (ctx: AttemptContext) => Promise<JsonResponse> {
  return (ctx) =>
    requestJson(
      `${sandbox.url}${apiPath(`/sobjects/Account/External_ID_vod__c/${encodeURIComponent(org.id)}`)}`,
      {
        method: 'PATCH',
        body: { Name: org.name },
        headers: { authorization: `Bearer ${token}` },
        signal: ctx.signal,
        timeoutMs: 10_000,
      },
      'CRM',
    );
}

function gateFor(
  policy: ThrottlePolicyInput,
  extra: { breakerStore?: SqliteBreakerStateStore } = {},
): DeliveryGate {
  return createDeliveryGate(parseThrottlePolicy(policy), { endpoint: 'crm-upsert', ...extra });
}

/** Arrivals per second: the least-squares slope of arrival index over arrival time. */
function slopePerSecond(times: readonly number[]): number {
  const n = times.length;
  const meanT = times.reduce((a, t) => a + t, 0) / n;
  const meanI = (n - 1) / 2;
  let cov = 0;
  let varT = 0;
  times.forEach((t, i) => {
    cov += (t - meanT) * (i - meanI);
    varT += (t - meanT) ** 2;
  });
  return (cov / varT) * 1000;
}

describe('delivery gate against the CRM sandbox', () => {
  it('holds the configured rate in the steady state and never exceeds R·1 s + B in any 1 s window', async () => {
    // 20/s rather than 40/s: arrival times carry scheduling jitter, and in the window that holds the
    // burst the only slack is one interval (1/R), so a wider interval keeps the check meaningful on a
    // busy machine without loosening the bound itself.
    const R = 20;
    const B = 5;
    const total = B + R * 5; // 5 s of work at the configured rate
    const gate = gateFor({ rate: R, burst: B, concurrency: { min: 4, max: 32, initial: 16 } });
    const work = orgs.slice(0, total);
    expect(work).toHaveLength(total);
    // Warm-up outside the measurement (one second of traffic): connections open and code paths hot, so
    // the log measures the gate rather than cold-start latency. Then the bucket refills to a full burst.
    await Promise.all(orgs.slice(-R).map((org) => gate.run('interactive', upsertAccount(org))));
    await delay((B / R) * 1000 + 100);
    await sandbox.clearRequests();
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < work.length; i = next++) {
        const response = await gate.run('interactive', upsertAccount(work[i]!));
        expect([201, 204]).toContain(response.status);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    gate.close();

    const log = await sandbox.apiRequests();
    expect(log).toHaveLength(total);
    expect(log.every((e) => e.status === 201 || e.status === 204)).toBe(true);
    expect(await sandbox.records('Account')).toHaveLength(total + R);

    // Sliding 1 s windows anchored at every request: never more than R + B.
    let busiest = 0;
    for (let i = 0, j = 0; i < log.length; i++) {
      while (j < log.length && log[j]!.at < log[i]!.at + 1000) j++;
      busiest = Math.max(busiest, j - i);
    }
    expect(busiest).toBeLessThanOrEqual(R + B);
    // …and the limit was the constraint (the test drove the gate at capacity).
    expect(busiest).toBeGreaterThanOrEqual(R);

    // Steady state: after the first second (the burst), the achieved rate is R ± 2 %. It is the
    // least-squares slope of arrivals over time, so one late arrival at either end cannot swing it.
    const steady = log.filter((e) => e.at >= log[0]!.at + 1000).map((e) => e.at);
    expect(steady.at(-1)! - steady[0]!).toBeGreaterThan(3500);
    const achieved = slopePerSecond(steady);
    expect(achieved).toBeGreaterThanOrEqual(R * 0.98);
    expect(achieved).toBeLessThanOrEqual(R * 1.02);
  }, 20_000);

  it('waits at least the Retry-After of a 429 before retrying', async () => {
    await sandbox.addFault({
      fault: { kind: 'rate-limit', status: 429, retryAfter: '1' },
      method: 'PATCH',
      times: 1,
    });
    const gate = gateFor({ rate: 50, burst: 5 });
    const response = await gate.run('interactive', upsertAccount(orgs[0]!));
    gate.close();
    expect(response.status).toBe(201);
    const log = await sandbox.apiRequests();
    expect(log.map((e) => e.status)).toEqual([429, 201]);
    expect(log[0]!.fault).toBe('rate-limit');
    expect(log[1]!.at - log[0]!.at).toBeGreaterThanOrEqual(1000);
    expect(log[1]!.at - log[0]!.at).toBeLessThan(3000);
  });

  it('clamps malformed or absurd Retry-After values instead of stalling or hammering', async () => {
    const policy: ThrottlePolicyInput = {
      rate: 50,
      burst: 5,
      retry: { maxRetryAfterMs: 1500, baseMs: 100, maxMs: 100, jitter: 'equal' },
    };
    // [value, lower bound, upper bound] of the gap between the 429 and the retry, in ms.
    const cases: [string, number, number][] = [
      ['86400', 1500, 3000], // a day: capped at maxRetryAfterMs
      ['soon', 50, 1000], // not a number: backoff (equal jitter of 100 ms)
      ['-1', 50, 1000], // negative: backoff
      ['1.5', 50, 1000], // fractional: backoff
      ['1000000000', 0, 1000], // an epoch timestamp in 2001: already past, retry at once
    ];
    for (const [value, min, max] of cases) {
      await sandbox.clearRequests();
      await sandbox.addFault({
        fault: { kind: 'rate-limit', status: 429, retryAfter: value },
        method: 'PATCH',
        times: 1,
      });
      const gate = gateFor(policy);
      await gate.run('interactive', upsertAccount(orgs[1]!));
      gate.close();
      const log = await sandbox.apiRequests();
      expect(
        log.map((e) => e.status),
        value,
      ).toEqual([429, log[1]!.status]);
      expect([201, 204]).toContain(log[1]!.status);
      const gap = log[1]!.at - log[0]!.at;
      expect(gap, value).toBeGreaterThanOrEqual(min);
      expect(gap, value).toBeLessThan(max);
    }
  });

  it('paces by the Sforce-Limit-Info the CRM reports and holds on REQUEST_LIMIT_EXCEEDED until the recheck', async () => {
    const gate = gateFor({ rate: 50, burst: 5, quota: { slowDownAt: 0.8, stopAt: 0.95, recheckMs: 300 } });
    await setCrmLimits(sandbox, { dailyRequestLimit: 100, used: 85 });
    await gate.run('interactive', upsertAccount(orgs[3]!));
    // api-usage=86/100: 0.86 is 60 % of the way from stopAt back to slowDownAt → 60 % of the rate.
    expect(gate.stats()).toMatchObject({ quotaUsage: 0.86, quotaMode: 'slow' });
    expect(gate.stats().rate).toBeCloseTo(30, 6);

    await setCrmLimits(sandbox, { used: 100 });
    await sandbox.clearRequests();
    const held = gate.run('interactive', upsertAccount(orgs[4]!));
    await delay(100);
    expect(gate.stats().quotaMode).toBe('hold');
    await setCrmLimits(sandbox, { dailyRequestLimit: 100_000, used: 0 });
    const response = await held;
    gate.close();
    expect(response.status).toBe(201);
    const log = await sandbox.apiRequests();
    expect(log.map((e) => e.status)).toEqual([403, 201]);
    expect(log[1]!.at - log[0]!.at).toBeGreaterThanOrEqual(300);
  });

  it('keeps a breaker opened by 5xx open across a restart, then recovers through a half-open probe', async () => {
    const path = join(dir, 'state.db');
    const policy: ThrottlePolicyInput = {
      rate: 50,
      burst: 5,
      breaker: { consecutiveFailures: 3, halfOpenAfterMs: 1000 },
      retry: { maxAttempts: 5, baseMs: 10, maxMs: 10 },
    };
    await sandbox.addFault({ fault: { kind: 'status', status: 500 }, method: 'PATCH' });

    const store1 = SqliteBreakerStateStore.open(path);
    const gate1 = gateFor(policy, { breakerStore: store1 });
    const first = await gate1.run('interactive', upsertAccount(orgs[2]!)).catch((e: unknown) => e);
    expect((first as SluiceError).code).toBe('FLOW_CIRCUIT_OPEN');
    expect((await sandbox.apiRequests()).map((e) => e.status)).toEqual([500, 500, 500]);
    gate1.close();
    store1.close();

    // "Restart": a new gate over the same SQLite file does not send anything while the circuit is open.
    const store2 = SqliteBreakerStateStore.open(path);
    const gate2 = gateFor(policy, { breakerStore: store2 });
    expect(gate2.stats().breakerState).toBe('open');
    const refused = (await gate2
      .run('interactive', upsertAccount(orgs[2]!))
      .catch((e: unknown) => e)) as SluiceError;
    expect(refused.code).toBe('FLOW_CIRCUIT_OPEN');
    expect(await sandbox.apiRequests()).toHaveLength(3);

    // After the cool-down one probe goes out; it fails, so the circuit opens again at once.
    await delay(Number(refused.details.retryInMs) + 50);
    const reopened = await gate2.run('interactive', upsertAccount(orgs[2]!)).catch((e: unknown) => e);
    expect((reopened as SluiceError).code).toBe('FLOW_CIRCUIT_OPEN');
    expect(await sandbox.apiRequests()).toHaveLength(4);

    // The target recovers; the next probe after the cool-down closes the circuit.
    await sandbox.clearFaults();
    await delay(1050);
    const response = await gate2.run('interactive', upsertAccount(orgs[2]!));
    expect(response.status).toBe(201);
    expect(gate2.stats().breakerState).toBe('closed');
    expect((await sandbox.apiRequests()).map((e) => e.status)).toEqual([500, 500, 500, 500, 201]);
    gate2.close();
    store2.close();

    const store3 = SqliteBreakerStateStore.open(path);
    const gate3 = gateFor(policy, { breakerStore: store3 });
    expect(gate3.stats().breakerState).toBe('closed');
    gate3.close();
    store3.close();
  }, 20_000);
});
