/**
 * Who runs a flow in cluster mode: one process at a time holds the flow's lease, a PostgreSQL session
 * advisory lock on a connection of its own. The server drops the lock with the session, so a process
 * or machine that dies hands the flow over without anyone cleaning up; a lease whose connection fails
 * is lost, and its holder stops sending (its `signal` aborts) before another process may take over.
 * A row beside the lock says who holds it (host, pid, since), for the message another process prints,
 * and carries the lease's fencing token, one more at each take-over: the state store checks it in every
 * page commit, so a holder that lost the lease and has not noticed yet commits nothing.
 */
import { hostname } from 'node:os';
import pg from 'pg';
import { SluiceError } from '../../core/errors/index.ts';
import { checkSchemaName, passwordsOf, scrubbed, serverOf } from './pg-connection.ts';

/** Where a connection URL points (`host:port/database`), as `sluice status` shows it. */
export { serverOf };

export interface FlowLease {
  readonly flow: string;
  /**
   * The lease's fencing token: one more each time the flow's lease is taken. A state store told it
   * (`StateStore.fence`) commits a page only while the flow's lease row still carries it, so a holder
   * that lost the lease without knowing yet cannot overwrite what its successor wrote.
   */
  readonly fence: number;
  /** Aborts when the lease is lost (its connection failed): stop sending, the lock may be gone. */
  readonly signal: AbortSignal;
  /** Gives the flow up (idempotent). */
  release(): Promise<void>;
}

/** Who holds a flow's lease, as the holder recorded it. */
export interface LeaseHolder {
  readonly host: string;
  readonly pid: number;
  readonly since: string;
}

export type LeaseAttempt =
  | { readonly acquired: true; readonly lease: FlowLease }
  | { readonly acquired: false; readonly holder?: LeaseHolder };

const HEARTBEAT_MS = 5_000;
const HEARTBEAT_TIMEOUT_MS = 10_000;

/** The lock key of a flow in a schema: one 64-bit key per (schema, flow). */
const lockKey = (schema: string, flow: string): string => JSON.stringify(['sluice flow lease', schema, flow]);

/** Tries to take the flow's lease, without waiting. */
export async function tryFlowLease(options: {
  readonly url: string;
  readonly schema: string;
  readonly flow: string;
  readonly now?: () => Date;
  /** How often the holder checks its connection (default 5 s). */
  readonly heartbeatMs?: number;
}): Promise<LeaseAttempt> {
  const { flow } = options;
  const schema = checkSchemaName(options.schema);
  const client = new pg.Client({
    connectionString: options.url,
    connectionTimeoutMillis: 10_000,
    // A silent network cut must not leave a holder sending after the server let its lock go: TCP
    // keepalives and a heartbeat (below) that gives up within seconds.
    keepAlive: true,
    // Operators see who holds which flow in `pg_stat_activity` (truncated to PostgreSQL's 63 bytes).
    application_name: `sluice lease ${flow}`.slice(0, 63),
    query_timeout: HEARTBEAT_TIMEOUT_MS,
  });
  const controller = new AbortController();
  // A connection error after connect (server restart, network cut) loses the lease.
  client.on('error', (err) => controller.abort(leaseLost(flow, err)));
  try {
    await client.connect();
  } catch (err) {
    const server = serverOf(options.url);
    throw new SluiceError(
      'STORE_OPEN_FAILED',
      `Cannot reach PostgreSQL at ${server} for the lease of flow ${flow}.`,
      { cause: scrubbed(err, passwordsOf(options.url)), details: { server } },
    );
  }
  let held = false;
  let fence = 0;
  try {
    // Two processes creating it at once in a fresh schema: one of them sees a duplicate, which is fine.
    await client
      .query(
        `CREATE TABLE IF NOT EXISTS ${schema}.flow_leases (flow TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL, fence BIGINT NOT NULL DEFAULT 0)`,
      )
      .catch((err: unknown) => {
        if (!['23505', '42P07'].includes(String((err as { code?: unknown }).code))) throw err;
      });
    // A table an earlier Sluice made has no fencing token yet (altered only then: the lock it takes
    // would hold up commits each time).
    const fenced = await client.query(
      `SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'flow_leases' AND column_name = 'fence'`,
      [schema],
    );
    if (fenced.rowCount === 0) {
      await client
        .query(`ALTER TABLE ${schema}.flow_leases ADD COLUMN IF NOT EXISTS fence BIGINT NOT NULL DEFAULT 0`)
        .catch((err: unknown) => {
          if (String((err as { code?: unknown }).code) !== '42701') throw err;
        });
    }
    const got = await client.query<{ ok: boolean }>(
      'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok',
      [lockKey(schema, flow)],
    );
    if (got.rows[0]?.ok !== true) {
      const row = await client.query<{ host: string; pid: number; since: string }>(
        `SELECT host, pid, since FROM ${schema}.flow_leases WHERE flow = $1`,
        [flow],
      );
      await client.end().catch(() => undefined);
      const holder = row.rows[0];
      return holder
        ? { acquired: false, holder: { host: holder.host, pid: holder.pid, since: holder.since } }
        : { acquired: false };
    }
    held = true;
    const since = (options.now ?? (() => new Date()))().toISOString();
    // A new fencing token: the update waits for commits under the previous one still checking it.
    const row = await client.query<{ fence: string }>(
      `INSERT INTO ${schema}.flow_leases AS l (flow, host, pid, since, fence) VALUES ($1, $2, $3, $4, 1)
       ON CONFLICT (flow) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, since = EXCLUDED.since,
         fence = l.fence + 1
       RETURNING fence::text AS fence`,
      [flow, hostname(), process.pid, since],
    );
    fence = Number(row.rows[0]?.fence);
  } catch (err) {
    await client.end().catch(() => undefined);
    if (err instanceof SluiceError) throw err;
    const server = serverOf(options.url);
    throw new SluiceError('STORE_OPEN_FAILED', `Cannot take the lease of flow ${flow} at ${server}.`, {
      cause: scrubbed(err, passwordsOf(options.url)),
      details: { server, locked: held },
    });
  }
  // The heartbeat: the session (and so the lock) is alive as long as it answers.
  const heartbeat = setInterval(() => {
    client.query('SELECT 1').catch((err: unknown) => {
      if (released === undefined) controller.abort(leaseLost(flow, err));
    });
  }, options.heartbeatMs ?? HEARTBEAT_MS);
  heartbeat.unref();
  let released: Promise<void> | undefined;
  const release = (): Promise<void> =>
    (released ??= (async () => {
      clearInterval(heartbeat);
      // Ending the session drops the lock; unlocking first makes it visible at once to a waiting peer.
      if (!controller.signal.aborted) {
        await client
          .query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockKey(schema, flow)])
          .catch(() => undefined);
      }
      await client.end().catch(() => undefined);
    })());
  return { acquired: true, lease: { flow, fence, signal: controller.signal, release } };
}

function leaseLost(flow: string, cause?: unknown): SluiceError {
  return new SluiceError(
    'FLOW_LEASE_LOST',
    `The connection that holds the lease of flow ${flow} failed; this process stops sending so another may take over.`,
    cause === undefined ? {} : { cause },
  );
}

/** The error a run refused for a busy flow carries. */
export function flowBusy(flow: string, holder: LeaseHolder | undefined): SluiceError {
  const who = holder ? ` (host ${holder.host}, pid ${holder.pid}, since ${holder.since})` : '';
  return new SluiceError('FLOW_BUSY', `Flow ${flow} is being run by another Sluice process${who}.`, {
    details: holder ? { ...holder } : {},
  });
}

/**
 * Who runs the flow now, read without taking the lease (for `sluice status`): whether a session holds
 * its lock, and what the holder recorded (host, pid, since).
 */
export async function flowLeaseHolder(options: {
  readonly url: string;
  readonly schema: string;
  readonly flow: string;
}): Promise<{ readonly running: boolean; readonly holder?: LeaseHolder }> {
  const { flow } = options;
  const schema = checkSchemaName(options.schema);
  const client = new pg.Client({ connectionString: options.url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    // A 64-bit advisory key shows in pg_locks as its high and low 32 bits (classid, objid), objsubid 1.
    const locked = await client.query<{ running: boolean }>(
      `WITH k AS (SELECT hashtextextended($1, 0) AS key)
       SELECT EXISTS (
         SELECT 1 FROM pg_locks l, k
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.classid::bigint = ((k.key >> 32) & 4294967295) AND l.objid::bigint = (k.key & 4294967295)
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       ) AS running`,
      [lockKey(schema, flow)],
    );
    if (locked.rows[0]?.running !== true) return { running: false };
    const table = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [
      `${schema}.flow_leases`,
    ]);
    if (table.rows[0]?.exists !== true) return { running: true };
    const row = await client.query<{ host: string; pid: number; since: string }>(
      `SELECT host, pid, since FROM ${schema}.flow_leases WHERE flow = $1`,
      [flow],
    );
    const holder = row.rows[0];
    return holder
      ? { running: true, holder: { host: holder.host, pid: holder.pid, since: holder.since } }
      : { running: true };
  } catch (err) {
    const server = serverOf(options.url);
    throw new SluiceError('STORE_OPEN_FAILED', `Cannot read the lease of flow ${flow} at ${server}.`, {
      cause: scrubbed(err, passwordsOf(options.url)),
      details: { server },
    });
  } finally {
    await client.end().catch(() => undefined);
  }
}
