import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { pseudonymize } from '../src/core/anonymize/pseudonym.ts';
import { ConsentStore, consentFromFhir } from '../src/core/consent/index.ts';
import { isValidNpi, NPI_SYSTEM } from '../src/core/fhir/npi.ts';
import { hasErrors, validateFast } from '../src/core/validate/compiled/validate.ts';
import { loadFlow } from '../src/engine/config/load-flow.ts';
import { cloneUuid, generateCorpus, loadSources, permitConsent, syntheticNpi } from './corpus.ts';
import { baselineOfFiles } from './lib/baseline.ts';
import { benchFlowEnv, EXAMPLE_FLOW, exampleConsentSpec, writeBenchFlow } from './lib/flow-file.ts';

type Resource = Record<string, unknown> & { resourceType: string; id: string };

const dir = mkdtempSync(join(tmpdir(), 'sluice-corpus-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function read(files: readonly string[]): Resource[] {
  return files.flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Resource),
  );
}

function npis(resource: Resource): string[] {
  const identifiers = Array.isArray(resource.identifier) ? resource.identifier : [];
  return identifiers
    .filter((i: { system?: string }) => i.system === NPI_SYSTEM)
    .map((i: { value?: string }) => String(i.value));
}

const SPEC = { recipient: 'Organization/sluice-demo-crm', role: 'IRCP', purpose: 'HOPERAT' };

describe('the flow corpus', () => {
  const report = generateCorpus({ dir: join(dir, 'flow'), resources: 1203, kind: 'flow' });
  const resources = read(report.files);

  it('writes exactly the size asked, one Organization and one Practitioner in ten, the rest Patients', () => {
    expect(resources).toHaveLength(1203);
    expect(report.byType).toEqual({ Organization: 121, Practitioner: 120, Patient: 962 });
    expect(report.bytes).toBe(report.files.reduce((n, f) => n + readFileSync(f).length, 0));
  });

  it('gives every clone a fresh id: no two resources of a type share one, none keeps its source id', () => {
    const keys = resources.map((r) => `${r.resourceType}/${r.id}`);
    expect(new Set(keys).size).toBe(keys.length);
    const sources = loadSources();
    const sourceIds = new Set(
      [...sources.organizations, ...sources.practitioners, ...sources.patients.map((p) => p.patient)].flatMap(
        (t) => t.uuids,
      ),
    );
    expect(resources.filter((r) => sourceIds.has(r.id))).toEqual([]);
  });

  it('gives every provider one valid NPI of its own', () => {
    const providers = resources.filter((r) => r.resourceType === 'Practitioner');
    const all = providers.flatMap(npis);
    expect(all).toHaveLength(providers.length);
    expect(all.every(isValidNpi)).toBe(true);
    expect(new Set(all).size).toBe(all.length);
  });

  it('produces resources the compiled validator accepts', () => {
    const invalid = resources.filter((r) => hasErrors(validateFast(r)));
    expect(invalid.map((r) => r.resourceType)).toEqual([]);
  });

  it('is deterministic, and a smaller corpus is the prefix of a larger one, file by file', () => {
    const small = generateCorpus({ dir: join(dir, 'small'), resources: 37, kind: 'flow' });
    for (const file of small.files) {
      const name = file.slice(file.lastIndexOf('/') + 1);
      const big = readFileSync(join(dir, 'flow', name), 'utf8');
      expect(big.startsWith(readFileSync(file, 'utf8'))).toBe(true);
    }
  });

  it('refuses a size that is not a positive integer', () => {
    for (const resources of [0, -5, 2.5, Number.NaN]) {
      expect(() => generateCorpus({ dir: join(dir, 'bad'), resources, kind: 'flow' })).toThrow(
        /positive integer/,
      );
    }
  });
});

describe('consents in the flow corpus', () => {
  const report = generateCorpus({ dir: join(dir, 'consent'), resources: 500, kind: 'flow', consents: SPEC });
  const resources = read(report.files);

  it('follows each Patient with a Consent about it, within the same total', () => {
    expect(resources).toHaveLength(500);
    const patients = new Set(resources.filter((r) => r.resourceType === 'Patient').map((r) => r.id));
    const consents = resources.filter((r) => r.resourceType === 'Consent');
    const about = consents.map((c) => String((c.patient as { reference: string }).reference));
    expect(new Set(about).size).toBe(consents.length);
    expect(about.every((ref) => patients.has(ref.slice('Patient/'.length)))).toBe(true);
    // At most the last Patient can lack its Consent (the total cut between the two).
    expect(patients.size - consents.length).toBeLessThanOrEqual(1);
  });

  it('writes consents the engine reads as a permit for the flow purpose and recipient, and nothing else', () => {
    const key = { id: 'k', secret: new Uint8Array(32).fill(3) };
    const store = new ConsentStore({ version: 'test' });
    const consent = resources.find((r) => r.resourceType === 'Consent');
    if (consent === undefined) throw new Error('the corpus has no Consent');
    const parsed = consentFromFhir(consent, { system: 'epic', pseudonymKey: key });
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    store.upsert(parsed.value);
    const patientId = String((consent.patient as { reference: string }).reference).slice('Patient/'.length);
    const subject = pseudonymize(key, 'epic', 'Patient', patientId);
    const request = {
      purpose: 'HOPERAT',
      recipient: { id: SPEC.recipient, role: SPEC.role },
      resourceType: 'Patient',
      at: new Date(),
    };
    expect(store.decide(subject, request)).toBe('permit');
    expect(store.decide(subject, { ...request, purpose: 'HMARKT' })).not.toBe('permit');
    expect(
      store.decide(subject, { ...request, recipient: { id: 'Organization/other', role: 'IRCP' } }),
    ).not.toBe('permit');
  });

  it('builds valid FHIR Consent resources', () => {
    expect(hasErrors(validateFast(JSON.parse(permitConsent('c-1', 'p-1', SPEC))))).toBe(false);
  });
});

describe('the clinical corpus', () => {
  const report = generateCorpus({ dir: join(dir, 'clinical'), resources: 4000, kind: 'clinical' });
  const resources = read(report.files);
  const keys = new Set(resources.map((r) => `${r.resourceType}/${r.id}`));

  it('rewrites every bundle reference to Type/id and every one resolves inside the corpus', () => {
    const lines = report.files.flatMap((f) => readFileSync(f, 'utf8').split('\n'));
    expect(lines.some((l) => l.includes('urn:uuid:'))).toBe(false);
    const refs = lines.flatMap((l) =>
      [...l.matchAll(/"reference":"([A-Za-z]+\/[A-Za-z0-9.-]+)"/g)].map((m) => m[1]),
    );
    expect(refs.length).toBeGreaterThan(1000);
    expect(refs.filter((r) => !keys.has(r as string))).toEqual([]);
  });

  it('keeps each clone to its own patient: a resource refers to the patient of its own clone', () => {
    const patients = new Set(resources.filter((r) => r.resourceType === 'Patient').map((r) => r.id));
    const observations = resources.filter((r) => r.resourceType === 'Observation');
    for (const o of observations) {
      const subject = String((o.subject as { reference: string }).reference).slice('Patient/'.length);
      expect(patients.has(subject)).toBe(true);
      // Same clone prefix: the eight hex digits cloneUuid puts in front.
      expect(subject.slice(0, 8)).toBe(o.id.slice(0, 8));
    }
  });

  it('has no duplicate ids, although clones of 60 patients repeat', () => {
    expect(keys.size).toBe(resources.length);
  });
});

describe('clone ids and NPIs', () => {
  it('cloneUuid: distinct clones of distinct uuids never collide and stay FHIR ids', () => {
    const uuids = loadSources().patients.map((p) => p.patientId);
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 32 - 1 }), fc.nat({ max: 2 ** 32 - 1 }), (a, b) => {
        const x = cloneUuid(uuids[0] as string, a);
        const y = cloneUuid(uuids[1] as string, b);
        expect(x).not.toBe(y);
        expect(x === cloneUuid(uuids[0] as string, b)).toBe(a === b);
        expect(x).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
      }),
    );
  });

  it('syntheticNpi: always a valid NPI, different for different numbers', () => {
    fc.assert(
      fc.property(fc.nat({ max: 899_999_999 }), fc.nat({ max: 899_999_999 }), (a, b) => {
        expect(isValidNpi(syntheticNpi(a))).toBe(true);
        expect(syntheticNpi(a) === syntheticNpi(b)).toBe(a === b);
      }),
    );
  });
});

describe('the baseline over files', () => {
  it('counts every non-empty line and byte, and times only the JSON work', async () => {
    const report = generateCorpus({ dir: join(dir, 'baseline'), resources: 300, kind: 'flow' });
    const baseline = await baselineOfFiles(report.files);
    expect(baseline.lines).toBe(300);
    expect(baseline.bytes).toBe(report.bytes);
    expect(baseline.perSec).toBeGreaterThan(0);
    expect(baseline.jsonMs).toBeGreaterThan(0);
  });
});

describe('the benchmark flow file', () => {
  it('loads as a valid flow with the read mode, the open throttle and absolute file paths', () => {
    const file = writeBenchFlow(join(dir, 'bench-flow.yaml'), {
      mode: 'bulk',
      stateDir: join(dir, 'state'),
      intervalSeconds: 1,
      overlapSeconds: 1,
    });
    const flow = loadFlow(file, { env: benchFlowEnv('http://127.0.0.1:1/fhir', 'http://127.0.0.1:2') });
    expect(flow.file.source.mode).toBe('bulk');
    expect(flow.file.source.overlapSeconds).toBe(1);
    expect(flow.file.schedule.intervalSeconds).toBe(1);
    expect(flow.file.target.throttle?.rate).toBe(100_000);
    expect(flow.stateDir).toBe(join(dir, 'state'));
    const text = readFileSync(file, 'utf8');
    expect(text).not.toMatch(/File: \.\.?\//);
  });

  it('reads the consent recipient and purpose the example flow checks', () => {
    const flow = loadFlow(EXAMPLE_FLOW, {
      env: benchFlowEnv('http://127.0.0.1:1/fhir', 'http://127.0.0.1:2'),
    });
    const consent = flow.file.stages.consent;
    expect(exampleConsentSpec()).toEqual(
      consent
        ? { recipient: consent.recipient.id, role: consent.recipient.role, purpose: flow.file.purpose }
        : undefined,
    );
  });
});
