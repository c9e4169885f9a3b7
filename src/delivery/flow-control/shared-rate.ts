/**
 * A rate that several Sluice processes keep together (`target.throttle.shared`): every flow on every
 * machine that sends to one CRM org takes its turns from one counter in Redis, so together they stay
 * within what the org allows, whatever each process's own `rate`. The counter is GCRA (a token bucket
 * kept as one "theoretical arrival time"), advanced atomically by a Lua script on the server's clock,
 * so machines with different clocks agree. Redis unreachable: no turn is granted (fail closed).
 */
import { createHash } from 'node:crypto';
import { createClient } from '@redis/client';
import { SluiceError } from '../../core/errors/index.ts';

/** One shared turn to send, awaited before each request. */
export interface SharedRate {
  /** Resolves when this process may send one request; rejects with FLOW_SHARED_LIMIT_UNAVAILABLE. */
  take(signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/**
 * Grants one turn now (returns 0) or says in how many milliseconds to ask again. KEYS[1]: the counter;
 * ARGV[1]: milliseconds between turns (1000 / rate); ARGV[2]: how far ahead of now the counter may run
 * ((burst - 1) turns). The key expires once idle, so an unused rate leaves nothing behind.
 */
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return wait end
local next = tat + interval
redis.call('SET', KEYS[1], tostring(next), 'PX', math.ceil(next - now + interval))
return 0
`;

/** The servers of a Redis URL without credentials, for messages. */
export function redisServer(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

/** The counter's key for what the processes share (a key given, or the target's URL hashed). */
export function sharedRateKey(given: string | undefined, targetUrl: string): string {
  return `sluice:rate:${given ?? createHash('sha256').update(targetUrl).digest('hex').slice(0, 24)}`;
}

export async function openSharedRate(options: {
  readonly url: string;
  readonly key: string;
  readonly rate: number;
  readonly burst: number;
  /** How long one request waits for Redis before the turn is refused (default 5 s). */
  readonly timeoutMs?: number;
}): Promise<SharedRate> {
  const server = redisServer(options.url);
  const unavailable = (why: string): SluiceError =>
    new SluiceError(
      'FLOW_SHARED_LIMIT_UNAVAILABLE',
      `The shared rate at ${server} cannot be reached: ${why}.`,
      {
        details: { server },
      },
    );
  // The first connection fails at once (the flow does not start); a later loss is retried in the
  // background while turns are refused.
  let connected = false;
  const client = createClient({
    url: options.url,
    socket: {
      connectTimeout: options.timeoutMs ?? 5000,
      reconnectStrategy: (retries, cause) => (connected ? Math.min(100 * 2 ** retries, 2000) : cause),
    },
  });
  // Errors surface on the calls; the client reconnects on its own.
  client.on('error', () => undefined);
  try {
    await client.connect();
    connected = true;
  } catch (err) {
    await client.destroy();
    throw unavailable((err as Error).message.split(options.url).join(server));
  }
  const interval = 1000 / options.rate;
  const tolerance = (options.burst - 1) * interval;
  return {
    async take(signal) {
      while (true) {
        signal.throwIfAborted();
        let wait: number;
        try {
          const reply = await Promise.race([
            client.eval(GCRA, { keys: [options.key], arguments: [String(interval), String(tolerance)] }),
            new Promise<never>((_, reject) =>
              setTimeout(() => reject(new Error('no answer in time')), options.timeoutMs ?? 5000).unref(),
            ),
          ]);
          wait = Number(reply);
        } catch (err) {
          throw unavailable((err as Error).message.split(options.url).join(server));
        }
        if (!(wait > 0)) return;
        signal.throwIfAborted();
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          }, Math.ceil(wait));
          const onAbort = (): void => {
            clearTimeout(timer);
            reject(signal.reason);
          };
          signal.addEventListener('abort', onAbort, { once: true });
        });
      }
    },
    async close() {
      await client.close().catch(() => client.destroy());
    },
  };
}
