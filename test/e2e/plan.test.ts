import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_SEED } from '../../src/demo/run-demo.ts';
import { loadFlow } from '../../src/engine/config/load-flow.ts';
import { diffPlans, planFlow } from '../../src/engine/pipeline/plan.ts';
import { buildFlowRuntime } from '../../src/engine/runtime/build-flow.ts';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { exampleFlowText } from '../../src/testkit/example-flow.ts';

describe('sluice plan (dry run)', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: DEMO_SEED });
    crm = await startCrmSandbox();
    dir = mkdtempSync(join(tmpdir(), 'sluice-plan-'));
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const planFor = async (name: string, edit: (text: string) => string = (t) => t) => {
    const text = edit(exampleFlowText());
    writeFileSync(join(dir, name), text);
    const flow = loadFlow(join(dir, name), {
      env: {
        SLUICE_EHR_URL: ehr.url,
        SLUICE_CRM_URL: crm.url,
        SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
        SLUICE_STATE_DIR: join(dir, 'state'),
      },
    });
    const runtime = await buildFlowRuntime(flow);
    try {
      return { plan: await planFlow(flow, runtime, new AbortController().signal), store: runtime.store };
    } finally {
      await runtime.close();
    }
  };

  it('says what would cross, per object and field, and what would stay and why — sending nothing', async () => {
    const { plan } = await planFor('flow.yaml');
    const patients = plan.streams.Patient;
    expect(patients?.read).toBe(ehr.repo.recordCount('Patient'));
    expect(patients?.withheld).toMatchObject({ deceased: 2, 'consent-deny': 2 });
    expect(patients?.wouldSend).toBe(5);
    expect(plan.streams.Practitioner?.quarantined).toEqual({ MAP_INVALID_IDENTIFIER: 11 });
    // The whole patient exposure in one line a reviewer can read: a pseudonym and generalised fields.
    const allowed = [
      'Age_Over_89__c',
      'Birth_Year__c',
      'External_ID__c',
      'Gender__c',
      'Sluice_Lineage__c',
      'Source_System__c',
      'Zip3__c',
    ];
    const fields = Object.keys(plan.objects.Patient_Profile__c?.fields ?? {});
    expect(fields).toContain('External_ID__c');
    for (const f of fields) expect(allowed).toContain(f);
    expect(plan.objects.Patient_Profile__c?.fields).not.toHaveProperty('Name');
    // Nothing moved.
    expect(crm.records().length).toBe(0);
    expect(crm.requests.entries().filter((e) => e.method === 'PATCH')).toHaveLength(0);
  }, 60_000);

  it('--diff shows what a policy change would expose', async () => {
    const { plan: live } = await planFor('live.yaml');
    const { plan: loosened } = await planFor('loosened.yaml', (t) =>
      t.replace(
        '    - resourceType: Patient\n      when: deceased.exists() and deceased != false\n      reason: deceased\n      delivered: delete\n',
        '',
      ),
    );
    const diff = diffPlans(live, loosened);
    expect(diff.counts).toContainEqual({ key: 'Patient.withheld.deceased', before: 2, after: 0 });
    expect(diff.counts.find((c) => c.key === 'Patient.withheld.consent-deny')?.after).toBeGreaterThan(2);
    expect(diff.fieldsAdded).toEqual([]);
  }, 60_000);
});
