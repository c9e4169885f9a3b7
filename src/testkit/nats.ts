/**
 * NATS JetStream for event-bus tests. The server is `SLUICE_TEST_NATS_URL` (default the machine's,
 * 127.0.0.1:4222). Each test uses a stream of its own, deleted after. Without a server the tests skip,
 * saying why; with `CI=true` they must run, so a missing server fails.
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

export const TEST_NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

/** Why the bus tests cannot run here (no server, or no JetStream), or undefined when they can. */
async function natsUnavailable(): Promise<string | undefined> {
  let problem: string | undefined;
  try {
    const nc = await connect({ servers: TEST_NATS_URL, timeout: 2000, maxReconnectAttempts: 0 });
    try {
      await (await jetstreamManager(nc, { timeout: 2000 })).getAccountInfo();
    } catch (err) {
      problem = `JetStream is not enabled (${(err as Error).message})`;
    } finally {
      await nc.close();
    }
  } catch (err) {
    problem = `not reachable (${(err as Error).message})`;
  }
  if (problem === undefined) return undefined;
  const reason = `NATS at ${TEST_NATS_URL}: ${problem}; set SLUICE_TEST_NATS_URL`;
  if (process.env.CI === 'true') throw new Error(`event-bus tests must run on CI: ${reason}`);
  return reason;
}

/** Evaluated once per test file at import: `describe.skipIf(NATS_SKIP !== undefined)`. */
export const NATS_SKIP: string | undefined = await natsUnavailable();
if (NATS_SKIP !== undefined) console.warn(`skipping NATS tests: ${NATS_SKIP}`);

/** A fresh stream name for one test. */
export function testStream(prefix = 'SLUICE_T'): string {
  return `${prefix}_${randomBytes(5).toString('hex').toUpperCase()}`;
}

/** Deletes test streams (missing ones are fine). */
export async function deleteStreams(streams: readonly string[]): Promise<void> {
  if (streams.length === 0) return;
  const nc = await connect({ servers: TEST_NATS_URL, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => false);
  } finally {
    await nc.close();
  }
}
