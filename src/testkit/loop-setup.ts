import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CrmSandbox, startCrmSandbox } from '../sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../sandbox/ehr/index.ts';
import { SAMPLE_DATA_DIR } from './data.ts';
import { exampleFlowText, sandboxEnv } from './example-flow.ts';

/** Sandboxes and a flow file for tests of `sluice run` left running as its own process. */
export interface LoopSetup {
  readonly ehr: EhrSandbox;
  readonly crm: CrmSandbox;
  readonly flowFile: string;
  /** The environment the flow file resolves against (sandbox URLs, a fresh pseudonym key, the state). */
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

/**
 * An EHR sandbox seeded with the sample provider directory, a CRM sandbox, and the example flow reduced
 * to Organizations (no consent stage or allowlist: no patient data moves), every second, at a rate the
 * sandbox takes without pacing. With `postgres`, the flow keeps its state and audit trail there
 * (cluster mode; the URL comes from `SLUICE_PG_URL` in `env`); with `bus`, `sluice ingest` reads the EHR
 * into that NATS stream (`SLUICE_NATS_URL`) and `sluice run` reads it. Either seals what it keeps under
 * a fresh `SLUICE_STATE_KEY`.
 */
export async function startLoopSetup(
  options: {
    readonly postgres?: { readonly url: string; readonly schema: string };
    readonly bus?: { readonly url: string; readonly stream: string };
  } = {},
): Promise<LoopSetup> {
  const ehr = await startEhrSandbox({ seed: [join(SAMPLE_DATA_DIR, 'directory')] });
  const crm = await startCrmSandbox();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-loop-'));
  const flowFile = join(dir, 'flow.yaml');
  const text = exampleFlowText()
    .replace('resources: [Organization, Practitioner, Patient]', 'resources: [Organization]')
    .replace(/ {2}consent:\n(?: {4}.*\n)+/, '')
    .replace(/ {2}policy:\n(?: {4}.*\n)+/, '')
    .replace('rate: 20\n    burst: 20', 'rate: 1000\n    burst: 1000');
  // Cluster mode: state and audit trail in PostgreSQL (the flow file's `state` section goes on).
  const postgres = options.postgres
    ? `  postgres:\n    url: \${SLUICE_PG_URL}\n    schema: ${options.postgres.schema}\n`
    : '';
  const sealed =
    options.postgres || options.bus
      ? '  encryption:\n    key: ${SLUICE_STATE_KEY}\n    keyId: cluster-test\n'
      : '';
  const bus = options.bus
    ? `bus:\n  nats:\n    url: \${SLUICE_NATS_URL}\n    stream: ${options.bus.stream}\n`
    : '';
  writeFileSync(
    flowFile,
    `${text.replace(/^state:\n/m, `state:\n${postgres}${sealed}`)}\nschedule:\n  intervalSeconds: 1\n${bus}`,
  );
  return {
    ehr,
    crm,
    flowFile,
    env: {
      ...sandboxEnv(dir, { ehr: ehr.url, crm: crm.url }),
      ...(options.postgres ? { SLUICE_PG_URL: options.postgres.url } : {}),
      ...(options.bus ? { SLUICE_NATS_URL: options.bus.url } : {}),
      ...(sealed ? { SLUICE_STATE_KEY: randomBytes(32).toString('base64') } : {}),
    },
    async close() {
      await Promise.all([ehr.close(), crm.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
