import { hostname } from 'node:os';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import { dropSchemas, PG_SKIP, TEST_PG_URL, testSchema } from '../../testkit/postgres.ts';
import {
  type FlowLease,
  flowBusy,
  flowLeaseHolder,
  type LeaseAttempt,
  serverOf,
  tryFlowLease,
} from './pg-lease.ts';
import { PostgresStateStore } from './pg-store.ts';

const schemas: string[] = [];
afterAll(() => dropSchemas(schemas));

/** A fresh schema, created (the state store creates it in real use). */
async function schema(): Promise<string> {
  const name = testSchema('sluice_lease');
  schemas.push(name);
  const client = new pg.Client({ connectionString: TEST_PG_URL });
  await client.connect();
  await client.query(`CREATE SCHEMA ${name}`);
  await client.end();
  return name;
}

function held(attempt: LeaseAttempt): FlowLease {
  if (!attempt.acquired) throw new Error('expected the lease');
  return attempt.lease;
}

describe.skipIf(PG_SKIP !== undefined)('the flow lease (cluster mode)', () => {
  it('is held by one process at a time, says who holds it, and passes on when released', async () => {
    const s = await schema();
    expect(await flowLeaseHolder({ url: TEST_PG_URL, schema: s, flow: 'f' })).toEqual({ running: false });
    const first = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow: 'f' }));
    try {
      // Read without taking it: who runs the flow now.
      expect(await flowLeaseHolder({ url: TEST_PG_URL, schema: s, flow: 'f' })).toMatchObject({
        running: true,
        holder: { host: hostname(), pid: process.pid },
      });
      expect(await flowLeaseHolder({ url: TEST_PG_URL, schema: s, flow: 'g' })).toEqual({ running: false });
      const second = await tryFlowLease({ url: TEST_PG_URL, schema: s, flow: 'f' });
      expect(second.acquired).toBe(false);
      if (second.acquired) return;
      expect(second.holder).toMatchObject({ host: hostname(), pid: process.pid });
      expect(Date.parse(second.holder?.since ?? '')).not.toBeNaN();
      // Another flow, or the same flow in another schema, is another lease.
      const other = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow: 'g' }));
      const elsewhere = held(await tryFlowLease({ url: TEST_PG_URL, schema: await schema(), flow: 'f' }));
      await Promise.all([other.release(), elsewhere.release()]);
    } finally {
      await first.release();
      await first.release(); // idempotent
    }
    expect(await flowLeaseHolder({ url: TEST_PG_URL, schema: s, flow: 'f' })).toEqual({ running: false });
    const next = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow: 'f' }));
    expect(next.signal.aborted).toBe(false);
    await next.release();
  });

  it('is lost when its connection dies: the holder is told to stop and another process takes it', async () => {
    const s = await schema();
    const flow = `lost-${s}`;
    const lease = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow, heartbeatMs: 100 }));
    const admin = new pg.Client({ connectionString: TEST_PG_URL });
    await admin.connect();
    try {
      const killed = await admin.query(
        'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1',
        [`sluice lease ${flow}`.slice(0, 63)],
      );
      expect(killed.rows).toEqual([{ ok: true }]);
      await new Promise<void>((resolve) => {
        if (lease.signal.aborted) resolve();
        else lease.signal.addEventListener('abort', () => resolve());
      });
      const reason: unknown = lease.signal.reason;
      expect(isSluiceError(reason) && reason.code).toBe('FLOW_LEASE_LOST');
      const taker = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow }));
      await taker.release();
      await lease.release();
    } finally {
      await admin.end();
    }
  });

  it('fences page commits: a holder that lost the lease commits nothing once another took it over', async () => {
    const s = await schema();
    const flow = `fenced-${s}`;
    const store = await PostgresStateStore.open({ url: TEST_PG_URL, schema: s });
    const admin = new pg.Client({ connectionString: TEST_PG_URL });
    await admin.connect();
    const page = (position: string) => ({
      flow,
      stream: 'Patient',
      ledger: [],
      quarantine: [],
      checkpoint: {
        flow,
        stream: 'Patient',
        position,
        definitionHash: 'd',
        environment: 'e',
        runId: 'r',
        updatedAt: position,
      },
    });
    try {
      const first = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow }));
      store.fence(flow, first.fence);
      await store.commitPage(page('2026-12-01T00:00:00.000Z'));

      // The first holder's lease session ends (a network cut, a server restart) and another process
      // takes the flow; the first has not noticed yet and commits a page.
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
        [`sluice lease ${flow}`.slice(0, 63)],
      );
      const second = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow }));
      expect(second.fence).toBe(first.fence + 1);
      const err = await store.commitPage(page('2026-12-02T00:00:00.000Z')).catch((e: unknown) => e);
      expect(isSluiceError(err) && err.code).toBe('FLOW_LEASE_LOST');
      expect((await store.getCheckpoint(flow, 'Patient'))?.position).toBe('2026-12-01T00:00:00.000Z');

      // The new holder's store commits; other flows were never fenced.
      const successor = await PostgresStateStore.open({ url: TEST_PG_URL, schema: s });
      successor.fence(flow, second.fence);
      await successor.commitPage(page('2026-12-03T00:00:00.000Z'));
      await store.commitPage({ ...page('2026-12-04T00:00:00.000Z'), flow: 'other', checkpoint: undefined });
      expect((await store.getCheckpoint(flow, 'Patient'))?.position).toBe('2026-12-03T00:00:00.000Z');
      // Unfenced (the lease released), the store no longer checks.
      store.fence(flow, undefined);
      await store.commitPage(page('2026-12-05T00:00:00.000Z'));
      await successor.close();
      await Promise.all([first.release(), second.release()]);
    } finally {
      await admin.end();
      await store.close();
    }
  });

  it('takes over a lease table made before fencing tokens', async () => {
    const s = await schema();
    const admin = new pg.Client({ connectionString: TEST_PG_URL });
    await admin.connect();
    try {
      await admin.query(
        `CREATE TABLE ${s}.flow_leases (flow TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL)`,
      );
      await admin.query(`INSERT INTO ${s}.flow_leases VALUES ('f', 'old-host', 1, '2026-11-01T00:00:00Z')`);
    } finally {
      await admin.end();
    }
    const lease = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow: 'f' }));
    expect(lease.fence).toBe(1);
    await lease.release();
    const again = held(await tryFlowLease({ url: TEST_PG_URL, schema: s, flow: 'f' }));
    expect(again.fence).toBe(2);
    await again.release();
  });

  it('reports an unreachable server by host and database, never the password', async () => {
    const url = 'postgres://sluice:s3cret-pw@127.0.0.1:1/clusterdb';
    const err = await tryFlowLease({ url, schema: 'sluice', flow: 'f' }).catch((e: unknown) => e);
    expect(isSluiceError(err) && err.code).toBe('STORE_OPEN_FAILED');
    const shown = JSON.stringify({
      message: (err as Error).message,
      details: (err as { details?: unknown }).details,
    });
    expect(shown).toContain('127.0.0.1:1/clusterdb');
    expect(shown).not.toContain('s3cret-pw');
    expect(serverOf('not a url')).toBe('(unparseable URL)');
  });

  it('refuses a schema name that is not a plain identifier', async () => {
    const err = await tryFlowLease({ url: TEST_PG_URL, schema: 'x; DROP TABLE y', flow: 'f' }).catch(
      (e: unknown) => e,
    );
    expect(isSluiceError(err) && err.code).toBe('CFG_FLOW_INVALID');
  });

  it('names the holder in the FLOW_BUSY message', () => {
    const busy = flowBusy('f', { host: 'node-a', pid: 42, since: '2026-12-07T00:00:00.000Z' });
    expect(busy.code).toBe('FLOW_BUSY');
    expect(busy.message).toContain('host node-a, pid 42');
  });
});
