/**
 * Redis for the shared-rate tests. The server is `SLUICE_TEST_REDIS_URL` (default the machine's,
 * 127.0.0.1:6379); each test uses keys of its own. Without a server the tests skip, saying why; with
 * `CI=true` they must run, so a missing server fails.
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@redis/client';

export const TEST_REDIS_URL = process.env.SLUICE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisUnavailable(): Promise<string | undefined> {
  const client = createClient({
    url: TEST_REDIS_URL,
    socket: { connectTimeout: 2000, reconnectStrategy: false },
  });
  client.on('error', () => undefined);
  let problem: string | undefined;
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    problem = (err as Error).message;
  } finally {
    await client.destroy();
  }
  if (problem === undefined) return undefined;
  const reason = `Redis at ${TEST_REDIS_URL} is not reachable (${problem}); set SLUICE_TEST_REDIS_URL`;
  if (process.env.CI === 'true') throw new Error(`shared-rate tests must run on CI: ${reason}`);
  return reason;
}

/** Evaluated once per test file at import: `describe.skipIf(REDIS_SKIP !== undefined)`. */
export const REDIS_SKIP: string | undefined = await redisUnavailable();
if (REDIS_SKIP !== undefined) console.warn(`skipping Redis tests: ${REDIS_SKIP}`);

/** A fresh key for one test (it expires on its own once idle). */
export function testKey(prefix = 'sluice:test'): string {
  return `${prefix}:${randomBytes(6).toString('hex')}`;
}
