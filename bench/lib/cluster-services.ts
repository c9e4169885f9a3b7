/**
 * The servers of the cluster bench: PostgreSQL (`SLUICE_BENCH_PG_URL`, default the machine's trust-auth
 * server, database `test`) and NATS with JetStream (`SLUICE_BENCH_NATS_URL`, default 127.0.0.1:4222).
 * Whether each answers, and cleaning up after a run: a schema dropped, a stream deleted. Like
 * src/testkit/postgres.ts and nats.ts, without their import-time checks (an unreachable server skips a
 * configuration of the bench, never fails it).
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';

export const BENCH_PG_URL = process.env.SLUICE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const BENCH_NATS_URL = process.env.SLUICE_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';

/** A URL without its credentials, for reports. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}

const why = (err: unknown): string => (err instanceof Error ? err.message : String(err)) || String(err);

/** Why PostgreSQL cannot be used (one connection, 2 s at most), or undefined when it can. */
export async function postgresProblem(url = BENCH_PG_URL): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return `PostgreSQL at ${redactUrl(url)} is not reachable (${why(err)}); set SLUICE_BENCH_PG_URL`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Why NATS JetStream cannot be used (no server, or no JetStream), or undefined when it can. */
export async function natsProblem(url = BENCH_NATS_URL): Promise<string | undefined> {
  let nc: Awaited<ReturnType<typeof connect>>;
  try {
    nc = await connect({ servers: url, timeout: 2000, maxReconnectAttempts: 0 });
  } catch (err) {
    return `NATS at ${redactUrl(url)} is not reachable (${why(err)}); set SLUICE_BENCH_NATS_URL`;
  }
  try {
    await (await jetstreamManager(nc, { timeout: 2000 })).getAccountInfo();
    return undefined;
  } catch (err) {
    return `NATS at ${redactUrl(url)}: JetStream is not enabled (${why(err)})`;
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/** A fresh schema name (lower case, no quoting needed). */
export function benchSchema(): string {
  return `sluice_bench_${randomBytes(6).toString('hex')}`;
}

/** A fresh JetStream stream name. */
export function benchStream(): string {
  return `SLUICE_BENCH_${randomBytes(5).toString('hex').toUpperCase()}`;
}

/** Drops a schema and everything in it; a failure is returned, not thrown. */
export async function dropSchema(schema: string, url = BENCH_PG_URL): Promise<string | undefined> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) return `not a schema name: ${schema}`;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    return undefined;
  } catch (err) {
    return `schema ${schema} not dropped: ${why(err)}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Deletes a stream (a missing one is fine); a failure is returned, not thrown. */
export async function deleteStream(stream: string, url = BENCH_NATS_URL): Promise<string | undefined> {
  try {
    const nc = await connect({ servers: url, timeout: 5000, maxReconnectAttempts: 0 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(stream).catch(() => false);
      return undefined;
    } finally {
      await nc.close().catch(() => undefined);
    }
  } catch (err) {
    return `stream ${stream} not deleted: ${why(err)}`;
  }
}
