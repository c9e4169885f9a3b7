import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Patient } from '@medplum/fhirtypes';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pseudonymize } from '../../src/core/anonymize/pseudonym.ts';
import { planFlow } from '../../src/engine/pipeline/plan.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { buildFlowRuntime, flowRunOptions } from '../../src/engine/runtime/build-flow.ts';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { syntheaBundleDir } from '../../src/sandbox/ehr/testing.ts';
import { privacyConsent } from '../../src/testkit/consents.ts';
import { exampleFlowText, loadFlowAgainst, sandboxEnv } from '../../src/testkit/example-flow.ts';
import { lastJson, runSluice } from '../../src/testkit/sluice-process.ts';

// The example flow over HTTP on the shared Synthea patients: a patient the EHR later records as
// deceased, and one it merges into another record, leave the CRM; the surviving record stays.
describe('retraction of withheld records (example flow, sandboxes)', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [syntheaBundleDir()] });
    crm = await startCrmSandbox();
    for (const id of ehr.repo.recordedIds('Patient')) {
      await ehr.repo.createResource(privacyConsent(id, 'permit', { id: `c-${id}` }), { assignedId: true });
    }
    dir = mkdtempSync(join(tmpdir(), 'sluice-retract-e2e-'));
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('removes the profiles of a patient who died and of a merged record, audited by pseudonym', async () => {
    const text = exampleFlowText()
      .replace('resources: [Organization, Practitioner, Patient]', 'resources: [Patient]')
      .replace('id: Organization/sluice-demo-crm', 'id: Organization/anyone')
      .replace(/ {2}policy:\n(?: {4}.*\n)+/, '');
    const env = sandboxEnv(dir, { ehr: ehr.url, crm: crm.url });
    const flow = loadFlowAgainst(dir, text, { ehr: ehr.url, crm: crm.url }, 'flow.yaml', env);
    const runtime = await buildFlowRuntime(flow);
    const run = () => runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) });
    const pseudonymOf = (id: string) => pseudonymize(flow.pseudonymKey, 'epic', 'Patient', id);
    const profiles = () => new Set(crm.records('Patient_Profile__c').map((r) => String(r.External_ID__c)));
    try {
      const first = await run();
      expect(first.status).toBe('succeeded');
      const delivered = ehr.repo.recordedIds('Patient').filter((id) => profiles().has(pseudonymOf(id)));
      expect(delivered.length).toBeGreaterThan(10);
      expect(first.retracted).toBe(0);
      const [died, merged, survivor] = delivered as [string, string, string];

      await new Promise((r) => setTimeout(r, 10));
      const d = await ehr.repo.readResource<Patient>('Patient', died);
      await ehr.repo.updateResource<Patient>({ ...d, deceasedDateTime: '2026-11-30T10:00:00Z' });
      const m = await ehr.repo.readResource<Patient>('Patient', merged);
      await ehr.repo.updateResource<Patient>({
        ...m,
        active: false,
        link: [{ other: { reference: `Patient/${survivor}` }, type: 'replaced-by' }],
      });

      // The dry run says what the next run would remove, and removes nothing.
      const planned = await planFlow(flow, runtime, new AbortController().signal);
      expect(planned.streams.Patient?.wouldRetract).toEqual({ deceased: 1, merged: 1 });
      expect(profiles().size).toBe(delivered.length);

      const second = await run();
      expect(second.status).toBe('succeeded');
      expect(second.withholdReasons).toEqual({ deceased: 1, merged: 1 });
      expect(second.retracted).toBe(2);
      const now = profiles();
      expect(now.has(pseudonymOf(died))).toBe(false);
      expect(now.has(pseudonymOf(merged))).toBe(false);
      expect(now.has(pseudonymOf(survivor))).toBe(true);
      expect(now.size).toBe(delivered.length - 2);

      const retractions = (await runtime.audit.query({ runId: second.runId })).entries.filter(
        (e) => e.reason === 'withheld-retraction',
      );
      expect(retractions.map((e) => [e.subject, e.details.because]).sort()).toEqual(
        [
          [pseudonymOf(died), 'deceased'],
          [pseudonymOf(merged), 'merged'],
        ].sort(),
      );
      const trail = JSON.stringify((await runtime.audit.query({ runId: second.runId })).entries);
      for (const id of [died, merged, survivor]) expect(trail).not.toContain(id);
      expect((await runtime.audit.verify()).ok).toBe(true);

      expect(
        (await planFlow(flow, runtime, new AbortController().signal)).streams.Patient?.wouldRetract,
      ).toEqual({});
      // The run history says what left the CRM, as the summary did.
      const status = await runSluice(['status', join(dir, 'flow.yaml'), '--json'], env);
      const runs = lastJson(status.stdout).runs as { runId: string; removed?: number }[];
      expect(runs.find((r) => r.runId === second.runId)?.removed).toBe(2);
      expect(runs.find((r) => r.runId === first.runId)?.removed).toBe(0);

      // Nothing more to do on the next run.
      const third = await run();
      expect(third.retracted).toBe(0);
      expect(profiles().size).toBe(delivered.length - 2);
    } finally {
      await runtime.close();
    }
  });
});
