import { FhirRouter } from '@medplum/fhir-router';
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../../core/errors/index.ts';
import type { FaultInjector } from '../shared/faults.ts';
import type { RequestLog } from '../shared/request-log.ts';
import { createSandboxServer } from '../shared/server.ts';
import { SandboxAddress } from './address.ts';
import { BulkExportManager, type BulkExportOptions } from './bulk-export.ts';
import { checkClients, demoClient, type RegisteredClient } from './clients.ts';
import { PatientCompartment } from './compartment.ts';
import { registerControlRoutes } from './control.ts';
import { loadFhirDefinitions } from './definitions.ts';
import { faultOutcome, sendOutcome } from './fhir-reply.ts';
import { registerBodyParsers, registerFhirRoutes } from './http.ts';
import { registerAuthRoutes } from './http-auth.ts';
import { EXPORT_FILES_PATH, registerExportRoutes } from './http-export.ts';
import { type RepositoryStats, SandboxRepository } from './repository.ts';
import { type SeedReport, seedRepository } from './seed.ts';
import { SmartAuth } from './smart-auth.ts';

export type { BulkExportOptions, ExportManifest } from './bulk-export.ts';
export {
  DEMO_CLIENT_ID,
  DEMO_CLIENT_SCOPE,
  demoClient,
  loadClientsFile,
  type RegisteredClient,
} from './clients.ts';
export { type RepositoryStats, SandboxRepository, type Tombstone, type VersionAt } from './repository.ts';
export type { SeedReport } from './seed.ts';

export interface EhrSandboxOptions {
  /** Port on 127.0.0.1; default 0 (a free port). */
  readonly port?: number;
  /** Files or folders (recursive) of FHIR JSON, Bundles, NDJSON and their .gz forms. */
  readonly seed?: readonly string[];
  /** Default: `[demoClient()]` (keys from examples/keys). */
  readonly clients?: readonly RegisteredClient[];
  /** Access token lifetime; default 300, values above 300 are clamped to 300. */
  readonly tokenLifetimeSeconds?: number;
  /** Clock for tokens, assertion checks, `meta.lastUpdated` and export instants (tests inject a fake). */
  readonly now?: () => Date;
  /** Bulk export tuning: file split size (default 10,000 resources), chunk size, a test hook. */
  readonly bulkExport?: BulkExportOptions;
}

export interface EhrSandbox {
  /** FHIR base, e.g. http://127.0.0.1:41234/fhir (no trailing slash). */
  readonly url: string;
  /** e.g. http://127.0.0.1:41234/auth/token */
  readonly tokenUrl: string;
  /** The repository behind the server, for tests and the demo to inspect or edit directly. */
  readonly repo: SandboxRepository;
  readonly faults: FaultInjector;
  readonly requests: RequestLog;
  readonly stats: () => RepositoryStats;
  /** What seeding loaded, when `seed` was given. */
  readonly seeded: SeedReport | undefined;
  close(): Promise<void>;
}

/**
 * Starts the EHR sandbox: a FHIR R4 server (medplum's FhirRouter over an in-memory repository) with
 * SMART Backend Services authorization, Bulk Data export, tombstoned deletes, fault injection and
 * `/__sandbox/` controls, listening on 127.0.0.1.
 */
export async function startEhrSandbox(options: EhrSandboxOptions = {}): Promise<EhrSandbox> {
  const now = options.now ?? (() => new Date());
  const defs = loadFhirDefinitions();

  const clients = options.clients ?? [demoClient()];
  const problems = await checkClients(clients);
  if (problems.length > 0) {
    throw new SluiceError(
      'CFG_KEY_INVALID',
      `The EHR sandbox clients are invalid:\n  ${problems.join('\n  ')}`,
      {
        details: { problems: [...problems] },
      },
    );
  }

  const repo = new SandboxRepository({ now });
  const seeded = options.seed?.length
    ? await seedRepository(repo, options.seed, defs.isResourceType)
    : undefined;

  const address = new SandboxAddress();
  const auth = new SmartAuth({
    clients,
    tokenUrl: () => address.tokenUrl,
    now,
    ...(options.tokenLifetimeSeconds === undefined
      ? {}
      : { tokenLifetimeSeconds: options.tokenLifetimeSeconds }),
  });
  const compartment = new PatientCompartment(defs.patientCompartment);
  const exports = new BulkExportManager(
    repo,
    compartment,
    (jobId, name) => `${address.origin}${EXPORT_FILES_PATH}/${jobId}/${name}`,
    options.bulkExport,
  );

  const server = createSandboxServer({ errorBody: faultOutcome });
  const { app } = server;
  registerBodyParsers(app);
  registerErrorHandlers(app);
  registerAuthRoutes(app, { auth, address });
  registerExportRoutes(app, { auth, address, repo, defs, compartment, exports, now });
  registerFhirRoutes(app, { repo, router: new FhirRouter(), auth, defs, address, now });
  registerControlRoutes(app, { repo, defs });

  let origin: string;
  try {
    origin = await server.listen(options.port ?? 0);
  } catch (err) {
    await exports.close();
    await server.close().catch(() => undefined);
    throw err;
  }
  address.set(origin);

  return {
    url: address.fhirBase,
    tokenUrl: address.tokenUrl,
    repo,
    faults: server.faults,
    requests: server.requests,
    stats: () => repo.stats(),
    seeded,
    async close(): Promise<void> {
      await exports.close();
      await server.close();
    },
  };
}

/** Errors and unknown routes answer with an OperationOutcome; messages never echo request bodies. */
function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error, _request, reply) => {
    const statusCode = (error as { statusCode?: unknown }).statusCode;
    const status = typeof statusCode === 'number' && statusCode >= 400 && statusCode < 600 ? statusCode : 500;
    return sendOutcome(
      reply,
      status,
      status >= 500 ? 'Internal error in the EHR sandbox.' : clientErrorText(error),
    );
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    return sendOutcome(reply, 404, `No route for ${request.method} ${path}.`);
  });
}

function clientErrorText(error: unknown): string {
  if (error instanceof SyntaxError || /JSON/i.test((error as Error).message ?? '')) {
    return 'The request body is not valid JSON.';
  }
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('FST_')) return (error as Error).message;
  return 'Bad request.';
}
