import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { SluiceError } from '../../core/errors/index.ts';
import { type Fault, FaultInjector, FaultRuleInputSchema } from './faults.ts';
import { RequestLog, type RequestLogEntry } from './request-log.ts';

export interface SandboxServerOptions {
  /** Shapes the body of an injected error answer the way this sandbox's real counterpart does. */
  readonly errorBody: (status: number, message: string, code: string) => unknown;
  readonly bodyLimitBytes?: number;
}

export interface SandboxServer {
  readonly app: FastifyInstance;
  readonly faults: FaultInjector;
  readonly requests: RequestLog;
  /** Starts listening on 127.0.0.1 (port 0 picks a free port) and returns the origin, e.g. http://127.0.0.1:4100. */
  listen(port: number): Promise<string>;
  close(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyRequest {
    sandboxLog?: RequestLogEntry;
  }
}

/**
 * A Fastify instance with what both sandboxes share: the request log, fault injection, and the
 * `/__sandbox/faults` and `/__sandbox/requests` control endpoints. Sandboxes only ever listen on the
 * loopback interface.
 */
export function createSandboxServer(options: SandboxServerOptions): SandboxServer {
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimitBytes ?? 64 * 1024 * 1024,
    // A signed batch envelope for 200 records travels in one header (about 50 KB); Node's default is 16 KB.
    http: { maxHeaderSize: 1024 * 1024 },
  });
  const faults = new FaultInjector();
  const requests = new RequestLog();

  app.addHook('onRequest', async (request, reply) => {
    const path = request.url.split('?', 1)[0] ?? request.url;
    const entry = requests.start(request.method, path);
    request.sandboxLog = entry;
    const fault = faults.take(request.method, path);
    if (!fault) return;
    entry.fault = fault.kind;
    await applyFault(fault, reply, options, request.raw.socket.destroy.bind(request.raw.socket));
  });
  app.addHook('onResponse', async (request, reply) => {
    const entry = request.sandboxLog;
    if (entry) {
      entry.status = reply.statusCode;
      entry.durationMs = reply.elapsedTime;
    }
  });

  app.get('/__sandbox/faults', async () => ({ faults: faults.list() }));
  app.post('/__sandbox/faults', async (request, reply) => {
    const parsed = FaultRuleInputSchema.safeParse(request.body);
    if (!parsed.success) {
      return reply.code(400).send({ error: 'invalid fault rule', issues: parsed.error.issues });
    }
    return reply.code(201).send(faults.add(parsed.data));
  });
  app.delete('/__sandbox/faults', async () => {
    faults.clear();
    return { cleared: true };
  });
  app.delete<{ Params: { id: string } }>('/__sandbox/faults/:id', async (request, reply) => {
    const removed = faults.remove(Number(request.params.id));
    return reply.code(removed ? 200 : 404).send({ removed });
  });
  app.get<{ Querystring: { since?: string; path?: string } }>('/__sandbox/requests', async (request) => {
    const since = request.query.since === undefined ? undefined : Number(request.query.since);
    const filter: { since?: number; pathPrefix?: string } = {};
    if (since !== undefined && Number.isFinite(since)) filter.since = since;
    if (request.query.path) filter.pathPrefix = request.query.path;
    return { requests: requests.entries(filter), dropped: requests.dropped };
  });
  app.delete('/__sandbox/requests', async () => {
    requests.clear();
    return { cleared: true };
  });

  return {
    app,
    faults,
    requests,
    async listen(port: number): Promise<string> {
      try {
        await app.listen({ host: '127.0.0.1', port });
      } catch (err) {
        throw new SluiceError('SANDBOX_LISTEN_FAILED', `Could not listen on 127.0.0.1:${port}.`, {
          cause: err,
        });
      }
      const address = app.server.address();
      if (address === null || typeof address === 'string') {
        throw new SluiceError('SANDBOX_LISTEN_FAILED', 'The server did not report a TCP address.');
      }
      return `http://127.0.0.1:${address.port}`;
    },
    async close(): Promise<void> {
      await app.close();
    },
  };
}

async function applyFault(
  fault: Fault,
  reply: FastifyReply,
  options: SandboxServerOptions,
  destroySocket: () => void,
): Promise<void> {
  switch (fault.kind) {
    case 'latency':
      await sleep(fault.ms);
      return;
    case 'drop':
      destroySocket();
      // Nothing can be sent on a destroyed socket; hijack so Fastify does not try.
      reply.hijack();
      return;
    case 'status': {
      for (const [name, value] of Object.entries(fault.headers ?? {})) reply.header(name, value);
      const body = fault.body ?? options.errorBody(fault.status, 'Injected fault', 'INJECTED_FAULT');
      await reply.code(fault.status).send(body);
      return;
    }
    case 'rate-limit': {
      if (fault.retryAfter !== undefined) reply.header('retry-after', fault.retryAfter);
      const code = fault.status === 403 ? 'REQUEST_LIMIT_EXCEEDED' : 'TOO_MANY_REQUESTS';
      await reply.code(fault.status).send(options.errorBody(fault.status, 'Rate limit (injected)', code));
      return;
    }
  }
}
