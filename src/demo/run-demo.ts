import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import type { AuditLog } from '../engine/audit/index.ts';
import { loadFlow, type ResolvedFlow } from '../engine/config/load-flow.ts';
import type { ProgressSink } from '../engine/pipeline/progress.ts';
import { runFlow } from '../engine/pipeline/run-flow.ts';
import type { RunSummary } from '../engine/pipeline/summary.ts';
import { buildFlowRuntime, flowRunOptions } from '../engine/runtime/build-flow.ts';
import { createLogger } from '../engine/runtime/logger.ts';
import type { StateStore } from '../engine/store/state-store.ts';
import { type CrmSandbox, startCrmSandbox } from '../sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../sandbox/ehr/index.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The example flow the demo runs. */
export const DEMO_FLOW = join(ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');
/** The bundled sample: Synthea patients, a provider directory and privacy consents (see examples/data/README.md). */
export const DEMO_SEED = [
  join(ROOT, 'examples', 'data', 'synthea'),
  join(ROOT, 'examples', 'data', 'directory'),
  join(ROOT, 'examples', 'data', 'consents'),
];

export interface DemoOptions {
  /** Replaces the bundled sample. */
  readonly seed?: readonly string[];
  /** Keep state here; by default a temporary directory removed by `close()`. */
  readonly stateDir?: string;
  readonly progress?: ProgressSink;
  readonly logger?: Logger;
  /** Runs against the seeded EHR sandbox before the flow (tests add consents or faults here). */
  readonly prepare?: (ehr: EhrSandbox, crm: CrmSandbox) => Promise<void>;
  /** Another flow file than the example (a variant of it: the demo's sandboxes and keys). */
  readonly flowFile?: string;
}

export interface DemoRun {
  readonly summary: RunSummary;
  /** What the CRM sandbox holds after the run: in total and per object. */
  readonly crmRecords: number;
  readonly crmRecordsByObject: Readonly<Record<string, number>>;
  readonly ehr: EhrSandbox;
  readonly crm: CrmSandbox;
  readonly flow: ResolvedFlow;
  readonly store: StateStore;
  readonly audit: AuditLog;
  readonly stateDir: string;
  /** Runs the flow again against the same sandboxes and state (e.g. after editing EHR data). */
  rerun(): Promise<RunSummary>;
  close(): Promise<void>;
}

/**
 * The demo: both sandboxes in-process on free loopback ports, the EHR seeded with the sample, the
 * example flow run once with a fresh pseudonymisation key and state directory.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoRun> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'sluice-demo-')));
  const ehr = await startEhrSandbox({ seed: options.seed ?? DEMO_SEED });
  // The CRM trusts the demo's batch signing key and refuses unsigned batches.
  const batchJwks = JSON.parse(
    readFileSync(join(ROOT, 'examples', 'keys', 'batch-signing.jwks.json'), 'utf8'),
  ) as {
    keys: JWK[];
  };
  const crm = await startCrmSandbox({ batchJwks, requireSignedBatches: true });
  try {
    await options.prepare?.(ehr, crm);
    const env = {
      ...process.env,
      SLUICE_EHR_URL: ehr.url,
      SLUICE_CRM_URL: crm.url,
      // A fresh key per demo unless one is exported (so the demo's state can be inspected afterwards).
      SLUICE_PSEUDONYM_KEY: process.env.SLUICE_PSEUDONYM_KEY ?? randomBytes(32).toString('base64'),
      SLUICE_PSEUDONYM_KEY_ID: 'demo-1',
      SLUICE_STATE_DIR: stateDir,
    };
    const flow = loadFlow(options.flowFile ?? DEMO_FLOW, { env });
    const runtime = await buildFlowRuntime(flow);
    const logger = options.logger ?? createLogger();
    const once = (): Promise<RunSummary> =>
      runFlow({
        ...flowRunOptions(flow, runtime),
        logger,
        ...(options.progress ? { progress: options.progress } : {}),
      });
    const summary = await once();
    const byObject: Record<string, number> = {};
    for (const record of crm.records())
      byObject[record.attributes.type] = (byObject[record.attributes.type] ?? 0) + 1;
    return {
      summary,
      crmRecords: Object.values(byObject).reduce((a, b) => a + b, 0),
      crmRecordsByObject: byObject,
      ehr,
      crm,
      flow,
      store: runtime.store,
      audit: runtime.audit,
      stateDir,
      rerun: once,
      async close() {
        await runtime.close();
        await Promise.all([ehr.close(), crm.close()]);
        if (options.stateDir === undefined) await rm(stateDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all([ehr.close(), crm.close()]);
    if (options.stateDir === undefined) await rm(stateDir, { recursive: true, force: true });
    throw err;
  }
}
