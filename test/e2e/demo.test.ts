import { join } from 'node:path';
import type { Consent, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateFast } from '../../src/core/validate/compiled/validate.ts';
import { DEMO_SEED, type DemoRun, runDemo } from '../../src/demo/run-demo.ts';
import { syntheaBundleDir } from '../../src/sandbox/ehr/testing.ts';
import { SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';
import { directoryWords, findPhi, patientPhi } from './phi-scan.ts';

describe('the demo on the bundled sample', () => {
  let demo: DemoRun;
  beforeAll(async () => {
    demo = await runDemo();
  }, 60_000);
  afterAll(async () => {
    await demo?.close();
  });

  it('delivers records and the CRM holds exactly what was delivered', () => {
    const s = demo.summary;
    expect(s.status).toBe('succeeded');
    expect(s.delivered).toBeGreaterThan(0);
    expect(s.delivered).toBe(demo.crmRecords);
    expect(demo.crmRecordsByObject.Patient_Profile__c).toBe(s.byStream.Patient?.delivered);
    expect(s.read).toBe(Object.values(s.byStream).reduce((n, c) => n + c.read, 0));
    // Every record read is accounted for: delivered (possibly as several CRM records), withheld or quarantined.
    for (const c of Object.values(s.byStream))
      expect(c.read).toBeGreaterThanOrEqual(c.quarantined + c.withheld);
  });

  it('withholds deceased patients and quarantines malformed NPIs with a specific reason', () => {
    expect(demo.summary.withholdReasons.deceased).toBeGreaterThan(0);
    expect(Object.keys(demo.summary.quarantineReasons)).toEqual(['MAP_INVALID_IDENTIFIER']);
  });

  it('stores one checkpoint per stream', async () => {
    const checkpoints = await demo.store.listCheckpoints('epic-to-veeva');
    expect(checkpoints.map((c) => c.stream).sort()).toEqual([
      'Consent',
      'Organization',
      'Patient',
      'Practitioner',
    ]);
    for (const c of checkpoints) expect(c.definitionHash).toBe(demo.flow.definitionHash);
  });

  it('patient profiles carry only a pseudonym and generalised demographics', () => {
    const profiles = demo.crm.records('Patient_Profile__c');
    expect(profiles.length).toBeGreaterThan(0);
    for (const p of profiles) {
      expect(p.External_ID__c).toMatch(/^p[a-z2-7]{32}$/);
      if (p.Zip3__c != null) expect(p.Zip3__c).toMatch(/^\d{3}$/);
      if (p.Birth_Year__c != null) expect(Number(p.Birth_Year__c)).toBeGreaterThan(1900);
      expect(['Male', 'Female', 'Other', 'Unknown']).toContain(p.Gender__c);
    }
  });

  it('every sent, withheld and quarantined record has its audit entry, and the log verifies', async () => {
    const s = demo.summary;
    const all: Awaited<ReturnType<typeof demo.audit.query>>['entries'][number][] = [];
    let after: number | undefined;
    do {
      const page = await demo.audit.query({
        runId: s.runId,
        limit: 1000,
        ...(after === undefined ? {} : { after }),
      });
      all.push(...page.entries);
      after = page.next;
    } while (after !== undefined);
    const count = (kind: string, filter: (e: (typeof all)[number]) => boolean = () => true) =>
      all.filter((e) => e.kind === kind && filter(e)).length;
    // One per record sent (batch entries carry reason "batch"), withheld (consent decisions are
    // access-decision entries) and quarantined.
    const sentRecords = count('send', (e) => e.reason !== 'batch');
    expect(sentRecords).toBe(
      s.byStream.Organization!.delivered / 2 +
        s.byStream.Practitioner!.delivered / 2 +
        s.byStream.Patient!.delivered,
    );
    expect(count('send', (e) => e.reason === 'batch')).toBe(s.batches);
    expect(count('withhold') + count('access-decision')).toBe(s.withheld);
    expect(count('quarantine')).toBe(s.quarantined);
    expect(count('run-start')).toBe(1);
    expect(count('run-end')).toBe(1);
    // Patient entries name the person by pseudonym only.
    const patientEntries = all.filter((e) => e.details.stream === 'Patient');
    expect(patientEntries.length).toBeGreaterThan(0);
    for (const e of patientEntries) {
      expect(e.subject).toMatch(/^p[a-z2-7]{32}$/);
      expect(e.details.source).toBeUndefined();
    }
    // No patient id appears anywhere in the audit.
    const text = JSON.stringify(all);
    for (const id of demo.ehr.repo.recordedIds('Patient')) expect(text).not.toContain(id);
    const report = await demo.audit.verify();
    expect(report.ok).toBe(true);
    expect(report.unsealed).toBe(0);
    expect(report.checkpoints).toBeGreaterThan(0);
  });

  it('explains a delivered patient from source to CRM record', async () => {
    const profile = demo.crm.records('Patient_Profile__c')[0];
    const pseudonym = String(profile?.External_ID__c);
    const ledger = await demo.store.ledgerBySource('epic-to-veeva', pseudonym);
    expect(ledger.map((l) => l.targetId)).toEqual([profile?.Id]);
    const entries = (await demo.audit.query({ subject: pseudonym, limit: 100 })).entries;
    const sent = entries.find((e) => e.kind === 'send');
    expect(sent?.batchId).toBeDefined();
    const batch = await demo.store.getBatch(sent?.batchId as string);
    expect(batch?.jws).toBeDefined();
    expect(
      JSON.parse(batch?.envelope ?? '{}').items.some((i: { sourceId: string }) => i.sourceId === pseudonym),
    ).toBe(true);
    // The CRM sandbox verified that batch's signature on receipt.
    expect(demo.crm.verifiedBatches.map((b) => b.batchId)).toContain(sent?.batchId);
    // Its FHIR Provenance: valid R4, the pseudonym as the source entity, every stage as a step.
    const [provenance] = await demo.store.provenanceOf('epic-to-veeva', pseudonym);
    expect(provenance).toBeDefined();
    expect(validateFast(provenance).filter((i) => i.severity === 'error')).toEqual([]);
    const text = JSON.stringify(provenance);
    expect(text).toContain(pseudonym);
    expect(text).toContain(sent?.batchId as string);
    for (const stage of ['read', 'validate', 'map', 'consent', 'anonymize', 'batch'])
      expect(text).toContain(`"valueCode":"${stage}"`);
    for (const id of demo.ehr.repo.recordedIds('Patient')) expect(text).not.toContain(id);
  });

  it('a second run sends nothing and creates no duplicate', async () => {
    const second = await demo.rerun();
    expect(second.status).toBe('succeeded');
    expect(second.delivered).toBe(0);
    expect(second.batches).toBe(0);
    expect(demo.crm.records().length).toBe(demo.crmRecords);
  });

  it('an edited patient is updated in place, not duplicated', async () => {
    const patients = demo.ehr.repo.recordedIds('Patient');
    const profilesBefore = demo.crm.records('Patient_Profile__c').length;
    let edited = 0;
    for (const id of patients) {
      const patient = await demo.ehr.repo.readResource<Patient>('Patient', id);
      if (patient.deceasedDateTime) continue;
      await demo.ehr.repo.updateResource({
        ...patient,
        gender: patient.gender === 'female' ? 'male' : 'female',
      });
      edited++;
      break;
    }
    expect(edited).toBe(1);
    const third = await demo.rerun();
    expect(third.updated).toBe(1);
    expect(third.created).toBe(0);
    expect(demo.crm.records('Patient_Profile__c').length).toBe(profilesBefore);
  });
});

function permitConsent(patientId: string): Consent {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }],
    },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patientId}` },
    provision: {
      type: 'permit',
      actor: [
        {
          role: {
            coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }],
          },
          reference: { reference: 'Organization/sluice-demo-crm' },
        },
      ],
      purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HOPERAT' }],
    },
  };
}

describe('consent changes as events, over HTTP', () => {
  let demo: DemoRun;
  beforeAll(async () => {
    demo = await runDemo();
  }, 60_000);
  afterAll(async () => {
    await demo?.close();
  });

  it('an opt-out turned into an opt-in sends the person withheld before; an opt-in withdrawn removes them', async () => {
    const profiles = () => demo.crm.records('Patient_Profile__c').length;
    const before = profiles();
    const consents = await demo.ehr.repo.search<Consent>({ resourceType: 'Consent', count: 100 } as never);
    const optOut = consents.entry
      ?.map((e) => e.resource as Consent)
      .find((c) => c.provision?.type === 'deny');
    expect(optOut).toBeDefined();
    await demo.ehr.repo.updateResource<Consent>({
      ...(optOut as Consent),
      provision: { ...(optOut as Consent).provision, type: 'permit' },
    });
    const granted = await demo.rerun();
    expect(granted.reconsidered).toBe(1);
    expect(granted.byStream.Patient?.delivered).toBe(1);
    expect(profiles()).toBe(before + 1);

    const optIn = consents.entry
      ?.map((e) => e.resource as Consent)
      .find((c) => c.provision?.type === 'permit');
    const current = await demo.ehr.repo.readResource<Consent>('Consent', optIn?.id as string);
    await demo.ehr.repo.updateResource<Consent>({ ...current, status: 'inactive' });
    const withdrawn = await demo.rerun();
    expect(withdrawn.suppressed).toBe(1);
    expect(profiles()).toBe(before);
  });
});

describe('no PHI reaches the CRM', () => {
  // The whole shared Synthea set when this machine has it (60 patients), else the bundled sample.
  const seed = [syntheaBundleDir(), join(SAMPLE_DATA_DIR, 'directory')];
  let demo: DemoRun;
  beforeAll(async () => {
    // Every patient of this larger set consents to the demo flow's purpose and recipient.
    demo = await runDemo({
      seed,
      prepare: async (ehr) => {
        for (const id of ehr.repo.recordedIds('Patient')) await ehr.repo.createResource(permitConsent(id));
      },
    });
  }, 120_000);
  afterAll(async () => {
    await demo?.close();
  });

  it('finds none of any patient’s names, identifiers, phones, e-mail, street or exact birth date', async () => {
    const patients = await patientPhi([syntheaBundleDir()]);
    expect(patients.length).toBeGreaterThanOrEqual(9);
    expect(demo.summary.byStream.Patient?.delivered).toBeGreaterThan(0);
    const corpus = JSON.stringify(demo.crm.records());
    expect(corpus.length).toBeGreaterThan(1000);
    // Hospitals named after a family name ("Wilson Medical Center") are directory data, not leaks.
    expect(findPhi(corpus, patients, await directoryWords(seed))).toEqual([]);
    // Patient profiles must not hold even those words.
    expect(findPhi(JSON.stringify(demo.crm.records('Patient_Profile__c')), patients)).toEqual([]);
  });

  it('the scan itself finds PHI when it is there, and names only as whole words', async () => {
    const patients = await patientPhi(DEMO_SEED);
    const first = patients[0];
    expect(first).toBeDefined();
    const leaked = JSON.stringify([{ note: first?.values.find((v) => v.category === 'street')?.value }]);
    expect(findPhi(leaked, patients)).toContain(`street of ${first?.ref}`);
    const name = first?.values.find((v) => v.category === 'name')?.value ?? '';
    expect(findPhi(JSON.stringify({ Name: `Dr ${name}` }), patients)).toContain(`name of ${first?.ref}`);
    expect(findPhi(JSON.stringify({ Name: `${name}218x` }), patients)).not.toContain(`name of ${first?.ref}`);
  });
});
