import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { SObjectRecord } from '../../sandbox/crm/index.ts';
import { crmFetch } from '../../sandbox/crm/testing.ts';
import type { FaultRuleInput } from '../../sandbox/shared/faults.ts';
import type { RequestLogEntry } from '../../sandbox/shared/request-log.ts';

/**
 * Test-only: the CRM sandbox on a worker thread, driven through its HTTP control routes. Rate tests
 * measure arrival times from the sandbox's request log; on the test's own thread those times would
 * also include the client's JavaScript and garbage-collection pauses (one event loop, one heap), and a
 * late-stamped first request of a burst makes a 1 s window look busier than what was sent.
 */
export interface CrmSandboxThread {
  readonly url: string;
  /** API requests (`/services/data/…`) in arrival order. */
  apiRequests(): Promise<RequestLogEntry[]>;
  clearRequests(): Promise<void>;
  addFault(rule: FaultRuleInput): Promise<void>;
  clearFaults(): Promise<void>;
  records(object: string): Promise<SObjectRecord[]>;
  clearRecords(): Promise<void>;
  close(): Promise<void>;
}

export async function startCrmSandboxThread(): Promise<CrmSandboxThread> {
  const worker = new Worker(new URL('./sandbox-thread-worker.ts', import.meta.url));
  const [ready] = (await Promise.race([
    once(worker, 'message'),
    once(worker, 'error').then(([e]) => Promise.reject(e)),
  ])) as [{ url: string }];
  const sandbox = { url: ready.url };
  const expectStatus = async (
    status: number,
    call: Promise<{ status: number }>,
    what: string,
  ): Promise<void> => {
    const response = await call;
    if (response.status !== status) throw new Error(`CRM sandbox ${what} answered HTTP ${response.status}`);
  };
  return {
    url: ready.url,
    async apiRequests() {
      const response = await crmFetch<{ requests: RequestLogEntry[] }>(
        sandbox,
        undefined,
        'GET',
        `/__sandbox/requests?path=${encodeURIComponent('/services/data/')}`,
      );
      return [...response.body.requests].sort((a, b) => a.at - b.at);
    },
    clearRequests: () =>
      expectStatus(200, crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/requests'), 'log reset'),
    addFault: (rule) =>
      expectStatus(201, crmFetch(sandbox, undefined, 'POST', '/__sandbox/faults', rule), 'fault'),
    clearFaults: () =>
      expectStatus(200, crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/faults'), 'fault reset'),
    async records(object) {
      const response = await crmFetch<{ records: SObjectRecord[] }>(
        sandbox,
        undefined,
        'GET',
        `/__sandbox/records?object=${encodeURIComponent(object)}`,
      );
      return response.body.records;
    },
    clearRecords: () =>
      expectStatus(200, crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/records'), 'record reset'),
    async close() {
      const exited = once(worker, 'exit');
      worker.postMessage('close');
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
