/**
 * PostgreSQL for cluster-mode tests. The server is `SLUICE_TEST_PG_URL` (default: the machine's
 * trust-auth server, database `test`). Each test store lives in a schema of its own, dropped after.
 * Without a server the tests skip, saying why; with `CI=true` they must run, so a missing server fails.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const TEST_PG_URL = process.env.SLUICE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether the server answers (one connection, 2 s at most). */
async function reachable(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Why the PostgreSQL tests cannot run here, or undefined when they can. Under `CI=true` an unreachable
 * server throws: cluster mode is tested on CI, never skipped.
 */
export async function postgresUnavailable(): Promise<string | undefined> {
  const problem = await reachable(TEST_PG_URL);
  if (problem === undefined) return undefined;
  const reason = `PostgreSQL at ${TEST_PG_URL.replace(/\/\/[^@/]*@/, '//')} is not reachable (${problem}); set SLUICE_TEST_PG_URL`;
  if (process.env.CI === 'true') throw new Error(`cluster-mode tests must run on CI: ${reason}`);
  return reason;
}

/** Evaluated once per test file at import: `describe.skipIf(PG_SKIP !== undefined)`. */
export const PG_SKIP: string | undefined = await postgresUnavailable();
if (PG_SKIP !== undefined) console.warn(`skipping PostgreSQL tests: ${PG_SKIP}`);

/** A fresh schema name for one test (lower case, so it needs no quoting). */
export function testSchema(prefix = 'sluice_t'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Drops test schemas (and everything in them). */
export async function dropSchemas(schemas: readonly string[]): Promise<void> {
  if (schemas.length === 0) return;
  const client = new pg.Client({ connectionString: TEST_PG_URL });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
