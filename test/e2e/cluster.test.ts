import { readdirSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import type { Organization } from '@medplum/fhirtypes';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFlow } from '../../src/engine/config/load-flow.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { buildFlowRuntime, flowRunOptions } from '../../src/engine/runtime/build-flow.ts';
import { tryFlowLease } from '../../src/engine/store/pg-lease.ts';
import { type LoopSetup, startLoopSetup } from '../../src/testkit/loop-setup.ts';
import { dropSchemas, PG_SKIP, TEST_PG_URL, testSchema } from '../../src/testkit/postgres.ts';
import {
  parseJsonLine as json,
  lastJson,
  type RunningSluice,
  runSluice,
  startSluice,
} from '../../src/testkit/sluice-process.ts';

// Cluster mode, as operators run it: `state.postgres` in the flow file, `sluice` processes against
// real sandboxes and a real PostgreSQL. The flow's state and audit trail live in the server; one
// process runs the flow at a time, and a standby takes over when the holder's machine dies.

async function scalar(sql: string): Promise<number> {
  const client = new pg.Client({ connectionString: TEST_PG_URL });
  await client.connect();
  try {
    const result = await client.query<{ n: string }>(sql);
    return Number(result.rows[0]?.n);
  } finally {
    await client.end();
  }
}

const summaries = (loop: RunningSluice) => loop.lines.map(json).filter((s) => s?.runId !== undefined);

describe.skipIf(PG_SKIP !== undefined)('cluster mode (state.postgres)', () => {
  const schema = testSchema('sluice_cluster');
  let setup: LoopSetup;
  beforeAll(async () => {
    setup = await startLoopSetup({ postgres: { url: TEST_PG_URL, schema } });
  }, 60_000);
  afterAll(async () => {
    await setup?.close();
    await dropSchemas([schema]);
  });

  it('keeps the state and the audit trail in PostgreSQL: what the CRM holds is what the ledger says', async () => {
    const { crm, flowFile, env } = setup;
    const first = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(first.code, first.stderr).toBe(0);
    const summary = lastJson(first.stdout);
    expect(Number(summary.created)).toBeGreaterThan(0);
    expect(summary.delivered).toBe(crm.records().length);
    expect(await scalar(`SELECT count(*) AS n FROM ${schema}.ledger`)).toBe(summary.delivered);
    expect(await scalar(`SELECT count(*) AS n FROM ${schema}.checkpoints`)).toBeGreaterThan(0);
    // Only the circuit breaker stays on the machine.
    const files = readdirSync(env.SLUICE_STATE_DIR as string);
    expect(files.filter((f) => !f.includes('.breaker.sqlite'))).toEqual([]);

    // The next run starts from the checkpoints kept in the server: nothing is written again.
    const second = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(lastJson(second.stdout)).toMatchObject({ created: 0, updated: 0 });
    expect(crm.records().length).toBe(summary.delivered);

    // The audit trail in the server verifies, and the state commands read it there.
    const verify = await runSluice(['audit', 'verify', flowFile, '--json'], env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(await scalar(`SELECT count(*) AS n FROM ${schema}.audit_entries`)).toBeGreaterThan(0);
    const status = await runSluice(['status', flowFile, '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    const standing = lastJson(status.stdout) as { runs?: unknown[]; lease?: unknown };
    expect(standing.runs).toHaveLength(2);
    expect(standing.lease).toEqual({ running: false });
    expect(JSON.stringify(standing)).not.toContain(TEST_PG_URL);
  }, 120_000);

  it('a holder that lost its lease unnoticed commits nothing over the process that took the flow', async () => {
    const { ehr, flowFile, env } = setup;
    const flow = loadFlow(flowFile, { env });
    const runtime = await buildFlowRuntime(flow);
    // What the flow's state says was done: its checkpoints and its ledger, as rows.
    const state = async () => {
      const client = new pg.Client({ connectionString: TEST_PG_URL });
      await client.connect();
      try {
        const checkpoints = await client.query(`SELECT * FROM ${schema}.checkpoints ORDER BY flow, stream`);
        const ledger = await client.query(`SELECT * FROM ${schema}.ledger ORDER BY object, external_id`);
        return JSON.stringify([checkpoints.rows, ledger.rows]);
      } finally {
        await client.end();
      }
    };
    try {
      const attempt = await (runtime.lease as NonNullable<typeof runtime.lease>)();
      expect(attempt.acquired).toBe(true);
      if (!attempt.acquired) return;
      // Its lease session ends (a network cut) and another machine takes the flow over before this
      // process notices; a change is waiting at the EHR.
      const admin = new pg.Client({ connectionString: TEST_PG_URL });
      await admin.connect();
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
        [`sluice lease ${flow.file.flow}`.slice(0, 63)],
      );
      await admin.end();
      const successor = await tryFlowLease({ url: TEST_PG_URL, schema, flow: flow.file.flow });
      expect(successor.acquired).toBe(true);
      const [id] = ehr.repo.recordedIds('Organization') as [string];
      const org = await ehr.repo.readResource<Organization>('Organization', id);
      await ehr.repo.updateResource<Organization>({ ...org, name: 'Read After The Lease Was Lost' });
      const before = await state();
      // Its run reads the change and sends it; its page is refused, so the flow's state stays as the
      // successor found it (which reads the change again from there).
      const run = await runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) });
      expect(run.status).toBe('failed');
      expect(run.error?.code).toBe('FLOW_LEASE_LOST');
      expect(await state()).toBe(before);
      if (successor.acquired) await successor.lease.release();
      await attempt.lease.release();
    } finally {
      await runtime.close();
    }
  });

  it('runs a flow in one process at a time; a standby takes over when the holder dies', async () => {
    const { ehr, crm, flowFile, env } = setup;
    const before = crm.records().length;
    const holder = startSluice(['run', flowFile, '--json', '--no-progress'], env);
    let standby: RunningSluice | undefined;
    try {
      await holder.until(() => summaries(holder).length >= 1, "the holder's first cycle");

      // A second process is refused while the first holds the flow, and says who holds it.
      const once = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
      expect(once.code).toBe(1);
      const refusal = lastJson(once.stdout) as { error?: { code?: string; message?: string } };
      expect(refusal.error?.code).toBe('FLOW_BUSY');
      expect(refusal.error?.message).toContain(`pid ${holder.pid}`);
      const status = await runSluice(['status', flowFile, '--json'], env);
      expect(lastJson(status.stdout)).toMatchObject({
        state: { engine: 'postgres', schema },
        lease: { running: true, holder: { pid: holder.pid } },
      });

      // A second loop stands by and runs nothing while the holder lives.
      standby = startSluice(['run', flowFile, '--json', '--no-progress'], env);
      const waiting = standby;
      await waiting.until(() => waiting.lines.map(json).some((l) => l?.standingBy === true), 'standing by');
      await holder.until(() => summaries(holder).length >= 3, 'two more cycles of the holder');
      expect(summaries(waiting)).toHaveLength(0);

      // The holder's machine dies: the server drops its lease, the standby takes over.
      expect(await holder.kill('SIGKILL')).toBeNull();
      await waiting.until(() => waiting.lines.map(json).some((l) => l?.tookOver === true), 'the take-over');
      await waiting.until(() => summaries(waiting).length >= 1, "the new holder's first cycle");

      // It carries on from the checkpoints in the server: a change is sent once, nothing twice.
      const [id] = ehr.repo.recordedIds('Organization') as [string];
      const org = await ehr.repo.readResource<Organization>('Organization', id);
      await ehr.repo.updateResource<Organization>({ ...org, name: 'Cluster Take-over Renamed' });
      await waiting.until(() => summaries(waiting).some((s) => Number(s?.updated) > 0), 'the change');
      expect(summaries(waiting).every((s) => Number(s?.created) === 0)).toBe(true);
      expect(crm.records().length).toBe(before);
      expect(crm.records('Account').filter((a) => a.Name === 'Cluster Take-over Renamed')).toHaveLength(1);
    } finally {
      await holder.kill('SIGTERM');
      if (standby) expect(await standby.stop()).toBe(0);
    }
  }, 180_000);
});

describe.skipIf(PG_SKIP !== undefined)('cluster mode when PostgreSQL goes away', () => {
  const schema = testSchema('sluice_outage');
  let setup: LoopSetup;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  beforeAll(async () => {
    proxy = await startProxy(new URL(TEST_PG_URL));
    const url = new URL(TEST_PG_URL);
    url.port = String(proxy.port);
    setup = await startLoopSetup({ postgres: { url: url.toString(), schema } });
  }, 60_000);
  afterAll(async () => {
    await setup?.close();
    await proxy?.close();
    await dropSchemas([schema]);
  });

  it('a loop outlives the outage: it stops sending, says why, and carries on when the server is back', async () => {
    const { ehr, crm, flowFile, env } = setup;
    const loop = startSluice(['run', flowFile, '--json', '--no-progress'], env);
    try {
      await loop.until(() => summaries(loop).length >= 1, 'the first cycle');
      const before = summaries(loop).length;
      proxy.cut();
      await loop.until(
        () => /FLOW_LEASE_LOST|STORE_OPEN_FAILED|STORE_WRITE_FAILED|ECONNREFUSED/.test(loop.stderr()),
        'the outage reported',
      );
      await new Promise((r) => setTimeout(r, 2500));
      await proxy.restore();
      const [id] = ehr.repo.recordedIds('Organization') as [string];
      const org = await ehr.repo.readResource<Organization>('Organization', id);
      await ehr.repo.updateResource<Organization>({ ...org, name: 'After The Outage' });
      await loop.until(
        () =>
          summaries(loop)
            .slice(before)
            .some((s) => Number(s?.updated) > 0),
        'the change after the outage',
      );
    } finally {
      expect(await loop.stop()).toBe(0);
    }
    expect(crm.records('Account').filter((a) => a.Name === 'After The Outage')).toHaveLength(1);
  }, 120_000);
});

/** A TCP proxy to the server that can be cut (every connection dropped, new ones refused) and restored. */
async function startProxy(target: URL) {
  const sockets = new Set<Socket>();
  const listen = (port: number) =>
    new Promise<Server>((resolve) => {
      const server = createServer((client) => {
        const upstream = connect(Number(target.port || 5432), target.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => undefined);
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  let server = await listen(0);
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    cut() {
      server.close();
      for (const s of sockets) s.destroy();
    },
    async restore() {
      server = await listen(port);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
