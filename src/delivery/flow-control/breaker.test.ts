import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as delay } from 'node:timers/promises';
import { BrokenCircuitError } from 'cockatiel';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpStatusError } from '../../adapters/http/http-error.ts';
import { SluiceError } from '../../core/errors/index.ts';
import {
  type BreakerEvent,
  MemoryBreakerStateStore,
  PersistentBreaker,
  SqliteBreakerStateStore,
} from './breaker.ts';
import { classifyFailure } from './failure.ts';
import { DEFAULT_THROTTLE_POLICY } from './policy.ts';

const policy = { ...DEFAULT_THROTTLE_POLICY.breaker, consecutiveFailures: 3, halfOpenAfterMs: 300 };
const isFailure = (err: unknown): boolean => classifyFailure(err).breakerFailure;
const serverError = (): Promise<never> =>
  Promise.reject(new HttpStatusError({ status: 500, transient: true, what: 'CRM' }));
const badRequest = (): Promise<never> =>
  Promise.reject(new HttpStatusError({ status: 400, transient: false, what: 'CRM' }));
const ok = (): Promise<string> => Promise.resolve('ok');

async function failTimes(breaker: PersistentBreaker, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await expect(breaker.execute(serverError)).rejects.toThrow(HttpStatusError);
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-breaker-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('PersistentBreaker', () => {
  it('opens after consecutive server failures; client errors and successes do not count', async () => {
    const breaker = new PersistentBreaker({ endpoint: 'crm', policy, isFailure });
    await failTimes(breaker, 2);
    await expect(breaker.execute(badRequest)).rejects.toThrow(HttpStatusError);
    await expect(breaker.execute(ok)).resolves.toBe('ok');
    await failTimes(breaker, 2);
    expect(breaker.state).toBe('closed');
    await failTimes(breaker, 1);
    expect(breaker.state).toBe('open');
    await expect(breaker.execute(ok)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(breaker.retryInMs()).toBeGreaterThan(200);
  });

  it('stays open across a restart with a SQLite store, then lets one probe through after the cool-down', async () => {
    const path = join(dir, 'state', 'flow.db');
    const events: BreakerEvent[] = [];
    const store1 = SqliteBreakerStateStore.open(path);
    const first = new PersistentBreaker({ endpoint: 'crm', policy, isFailure, store: store1 });
    await failTimes(first, 3);
    expect(first.state).toBe('open');
    store1.close();

    const store2 = SqliteBreakerStateStore.open(path);
    const second = new PersistentBreaker({
      endpoint: 'crm',
      policy,
      isFailure,
      store: store2,
      onEvent: (e) => events.push(e),
    });
    expect(events).toEqual([{ type: 'restored', state: 'open' }]);
    expect(second.state).toBe('open');
    let calls = 0;
    const counted = (): Promise<string> => {
      calls++;
      return ok();
    };
    await expect(second.execute(counted)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(calls).toBe(0);
    // Another endpoint in the same store is unaffected.
    const other = new PersistentBreaker({ endpoint: 'ehr', policy, isFailure, store: store2 });
    expect(other.state).toBe('closed');

    await delay(second.retryInMs()! + 20);
    // Half-open admits a single probe; a second caller waits for its verdict instead of hammering.
    let release: () => void = () => undefined;
    const probe = second.execute(async () => {
      calls++;
      await new Promise<void>((r) => {
        release = r;
      });
      return 'probe';
    });
    const follower = second.execute(counted);
    await delay(20);
    expect(second.state).toBe('half-open');
    expect(calls).toBe(1);
    release();
    await expect(probe).resolves.toBe('probe');
    await expect(follower).resolves.toBe('ok');
    expect(second.state).toBe('closed');
    expect(events.map((e) => (e.type === 'state' ? e.state : e.type))).toEqual([
      'restored',
      'half-open',
      'closed',
    ]);
    store2.close();

    const store3 = SqliteBreakerStateStore.open(path);
    expect(new PersistentBreaker({ endpoint: 'crm', policy, isFailure, store: store3 }).state).toBe('closed');
    store3.close();
  });

  it('reopens when the probe fails, and keeps the failure count across restarts', async () => {
    const store = new MemoryBreakerStateStore();
    const breaker = new PersistentBreaker({ endpoint: 'crm', policy, isFailure, store });
    await failTimes(breaker, 3);
    await delay(policy.halfOpenAfterMs + 20);
    await expect(breaker.execute(serverError)).rejects.toThrow(HttpStatusError);
    expect(breaker.state).toBe('open');

    const counting = new PersistentBreaker({ endpoint: 'ehr', policy, isFailure, store });
    await failTimes(counting, 2);
    counting.save();
    const restarted = new PersistentBreaker({ endpoint: 'ehr', policy, isFailure, store });
    await failTimes(restarted, 1);
    expect(restarted.state).toBe('open');
  });

  it('does not trust a stored state that does not validate: the first call is a single probe', async () => {
    const db = new DatabaseSync(':memory:');
    const store = SqliteBreakerStateStore.using(db);
    db.prepare('INSERT INTO flow_breaker_state VALUES (?, ?, ?)').run('crm', '{not json', 'x');
    const events: BreakerEvent[] = [];
    const breaker = new PersistentBreaker({
      endpoint: 'crm',
      policy,
      isFailure,
      store,
      onEvent: (e) => events.push(e),
    });
    expect(events).toEqual([{ type: 'restore-refused' }]);
    expect(breaker.state).toBe('open');
    expect(breaker.retryInMs()).toBe(0);
    await expect(breaker.execute(ok)).resolves.toBe('ok');
    expect(breaker.state).toBe('closed');

    for (const bad of [
      { ownState: { value: 3, counters: 1 } },
      { ownState: { value: 1, openedAt: 'yesterday', attemptNo: 1 } },
      { ownState: { value: 9 } },
      null,
      42,
    ]) {
      const memory = new MemoryBreakerStateStore();
      memory.save('crm', bad);
      expect(new PersistentBreaker({ endpoint: 'crm', policy, isFailure, store: memory }).retryInMs()).toBe(
        0,
      );
    }
    db.close();
  });

  it('caps an opened-at time in the future and drops counters that do not fit the configured breaker', async () => {
    const store = new MemoryBreakerStateStore();
    store.save('crm', {
      ownState: { value: 1, openedAt: Date.now() + 86_400_000, attemptNo: 1 },
      breakerState: 0,
    });
    const capped = new PersistentBreaker({ endpoint: 'crm', policy, isFailure, store });
    expect(capped.retryInMs()).toBeLessThanOrEqual(policy.halfOpenAfterMs);

    store.save('ehr', { ownState: { value: 0 }, breakerState: { windows: 'lots' } });
    const consecutive = new PersistentBreaker({ endpoint: 'ehr', policy, isFailure, store });
    await failTimes(consecutive, 2);
    expect(consecutive.state).toBe('closed');
    await failTimes(consecutive, 1);
    expect(consecutive.state).toBe('open');
  });

  it('opens on a failure ratio with the sampling breaker', async () => {
    const ratio = {
      ...DEFAULT_THROTTLE_POLICY.breaker,
      failureRatio: 0.5,
      minimumRps: 1,
      samplingWindowMs: 5000,
    };
    const breaker = new PersistentBreaker({ endpoint: 'crm', policy: ratio, isFailure });
    for (let i = 0; i < 6; i++) await breaker.execute(ok);
    for (let i = 0; i < 4; i++) await breaker.execute(serverError).catch(() => undefined);
    expect(breaker.state).toBe('closed');
    for (let i = 0; i < 4; i++) await breaker.execute(serverError).catch(() => undefined);
    expect(breaker.state).toBe('open');
  });

  it('reports a store that cannot be opened, and keeps working in memory when saving fails', async () => {
    const blocked = join(dir, 'file');
    SqliteBreakerStateStore.open(blocked).close();
    expect(() => SqliteBreakerStateStore.open(join(blocked, 'nested.db'))).toThrow(SluiceError);
    const events: BreakerEvent[] = [];
    const failing = {
      load: () => undefined,
      save: () => {
        throw new Error('disk full');
      },
    };
    const breaker = new PersistentBreaker({
      endpoint: 'crm',
      policy,
      isFailure,
      store: failing,
      onEvent: (e) => events.push(e),
    });
    await failTimes(breaker, 3);
    expect(breaker.state).toBe('open');
    expect(events).toContainEqual({ type: 'persist-failed', error: 'Error' });
  });
});
