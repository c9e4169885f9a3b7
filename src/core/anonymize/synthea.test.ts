import { beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors/index.ts';
import { loadR4Definitions } from '../fhir/definitions.ts';
import { asArray, isJsonObject, type Json, type JsonObject } from '../fhir/resource.ts';
import { validateFhirResource } from '../validate/fhir-schema.ts';
import { aggregateTwoWay, determinedCells } from './aggregate.ts';
import { dayNumber } from './dates.ts';
import { ageBand, ageInYears, MAX_DISCLOSED_AGE } from './generalize.ts';
import { type AnonymizedBundle, anonymize, anonymizeBundle } from './pipeline.ts';
import { pseudonymize } from './pseudonym.ts';
import { assessRisk, enforceRisk, tuplesFromResources } from './risk.ts';
import {
  bundleResources,
  configZip3Lists,
  exampleRuleSet,
  readBundle,
  restrictedZip3,
  syntheaBundleFiles,
  testContext,
  testKey,
} from './testing.ts';

/**
 * The two example rule sets over real public data: the Synthea patient bundles (60 in the shared set,
 * 9 in the repository copy).
 */

const ctx = testContext();
const crm = exampleRuleSet('crm-follow-up');
const analytics = exampleRuleSet('analytics');

interface Case {
  readonly file: string;
  readonly source: JsonObject[];
  readonly patient: JsonObject;
  readonly analytics: AnonymizedBundle;
}
let cases: Case[] = [];

beforeAll(() => {
  loadR4Definitions();
  cases = syntheaBundleFiles().map((file) => {
    const bundle = readBundle(file);
    const source = bundleResources(bundle);
    const patient = source.find((r) => r.resourceType === 'Patient') as JsonObject;
    return { file, source, patient, analytics: anonymizeBundle(bundle, analytics, ctx) };
  });
});

/** Every identifying string of a Synthea patient, straight from the source record. */
function secretsOf(patient: JsonObject): string[] {
  const out = new Set<string>([String(patient.id), String(patient.birthDate)]);
  for (const name of asArray(patient.name).filter(isJsonObject)) {
    for (const part of [...asArray(name.given), name.family]) if (typeof part === 'string') out.add(part);
  }
  for (const id of asArray(patient.identifier).filter(isJsonObject))
    if (typeof id.value === 'string') out.add(id.value);
  for (const t of asArray(patient.telecom).filter(isJsonObject))
    if (typeof t.value === 'string') out.add(t.value);
  for (const a of asArray(patient.address).filter(isJsonObject)) {
    for (const line of asArray(a.line)) if (typeof line === 'string') out.add(line);
    if (typeof a.city === 'string') out.add(a.city);
    if (typeof a.postalCode === 'string') out.add(a.postalCode);
  }
  // Extensions carry more: mother's maiden name, birth place.
  for (const e of asArray(patient.extension).filter(isJsonObject)) {
    if (typeof e.valueString === 'string' && e.url !== undefined && String(e.url).includes('Maiden')) {
      out.add(e.valueString);
    }
    if (isJsonObject(e.valueAddress) && typeof e.valueAddress.city === 'string') out.add(e.valueAddress.city);
  }
  return [...out];
}

/** A secret as a whole word: a short given name must not match inside `ObservationValue`. */
function word(secret: string): RegExp {
  return new RegExp(`(^|[^A-Za-z0-9])${secret.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^A-Za-z0-9])`);
}

function strings(value: Json | undefined, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (isJsonObject(value)) for (const v of Object.values(value)) strings(v, out);
  return out;
}

describe('crm-follow-up on every Synthea patient', () => {
  it('leaves none of the names, identifiers, telecom, address lines, city or birth date', () => {
    expect(cases.length).toBeGreaterThanOrEqual(9);
    for (const { file, patient } of cases) {
      const result = anonymize(patient, crm, ctx);
      const text = JSON.stringify(result);
      for (const secret of secretsOf(patient)) expect(text, `${file}: ${secret}`).not.toMatch(word(secret));
      const o = result.resource as JsonObject;
      // Only the pseudonym, gender, birth year and ZIP3 (when the source has a ZIP code at all).
      const hasZip = asArray(patient.address).some(
        (a) => isJsonObject(a) && typeof a.postalCode === 'string',
      );
      expect(o.address !== undefined, file).toBe(hasZip);
      expect(
        Object.keys(o).every((k) =>
          ['resourceType', 'id', 'gender', 'birthDate', 'address', 'meta'].includes(k),
        ),
      ).toBe(true);
      expect(Object.keys((o.meta as JsonObject | undefined) ?? {})).toEqual(['security']);
      expect(validateFhirResource(o).ok, file).toBe(true);
    }
  });

  it('gives the birth year to people up to 89 and no birth date at all above', () => {
    let over = 0;
    for (const { patient } of cases) {
      const o = anonymize(patient, crm, ctx).resource as JsonObject;
      const age = ageInYears(String(patient.birthDate), ctx.asOf) as number;
      if (age > MAX_DISCLOSED_AGE) {
        over++;
        expect(o.birthDate).toBeUndefined();
        expect(ageBand(age)).toBe('90+');
      } else {
        expect(o.birthDate).toBe(String(patient.birthDate).slice(0, 4));
      }
    }
    // The shared set holds people born in the 1910s and 1920s.
    if (cases.length >= 60) expect(over).toBeGreaterThan(0);
  });

  it('reports ZIP3, and 000 for restricted prefixes, naming the list in the audit', () => {
    const patient = cases[0]?.patient as JsonObject;
    const at = (postalCode: string): JsonObject => ({
      ...patient,
      address: [{ ...(asArray(patient.address)[0] as JsonObject), postalCode }],
    });
    const zip = (postalCode: string, list: 'hhs-2000' | 'hrsa-2020') => {
      const result = anonymize(at(postalCode), crm, { ...ctx, restrictedZip3: restrictedZip3(list) });
      const address = asArray((result.resource as JsonObject).address)[0] as JsonObject;
      return { zip3: address.postalCode, audit: result.audit.find((a) => a.path === 'Patient.address') };
    };
    expect(zip('03601', 'hhs-2000')).toMatchObject({
      zip3: '000',
      audit: { paramsSummary: expect.stringContaining('restricted=hhs-2000') },
    });
    expect(zip('89301-1234', 'hhs-2000').zip3).toBe('000');
    expect(zip('20201', 'hhs-2000').zip3).toBe('202');
    expect(zip('20201', 'hrsa-2020')).toMatchObject({
      zip3: '000',
      audit: { paramsSummary: expect.stringContaining('hrsa-2020') },
    });
    expect(zip('01940', 'hhs-2000').zip3).toBe('019');
    // The shared public list and the repository's config agree.
    expect([...restrictedZip3('hhs-2000').prefixes].sort()).toEqual(
      [...(configZip3Lists()['hhs-2000'] ?? [])].sort(),
    );
  });

  it('uses the same stable pseudonym as the canonical profile and the analytics release', () => {
    for (const { patient, analytics: released } of cases) {
      const expected = pseudonymize(testKey('k1', 7), 'epic', 'Patient', String(patient.id));
      expect((anonymize(patient, crm, ctx).resource as JsonObject).id).toBe(expected);
      expect(released.results[0]?.resource?.id).toBe(expected);
    }
  });
});

describe('analytics on every Synthea bundle', () => {
  it('links every resource to its patient through the same pseudonym, and to nothing else', () => {
    for (const { file, analytics: released } of cases) {
      const patientId = released.results[0]?.resource?.id;
      const refs = released.results.flatMap((r) =>
        r.resource ? strings(r.resource).filter((s) => s.startsWith('Patient/')) : [],
      );
      expect(refs.length, file).toBeGreaterThan(0);
      expect(new Set(refs), file).toEqual(new Set([`Patient/${patientId}`]));
      // Every reference points at a released or pseudonymised id, never a source uuid.
      const all = released.results.flatMap((r) => (r.resource ? strings(r.resource) : []));
      expect(
        all.some((s) => s.startsWith('urn:uuid:')),
        file,
      ).toBe(false);
    }
  });

  it('contains none of the patient identifiers or the exact birth date anywhere', () => {
    for (const { file, patient, analytics: released } of cases) {
      const values = new Set(released.results.flatMap((r) => (r.resource ? strings(r.resource) : [])));
      const text = JSON.stringify(released.bundle);
      for (const secret of secretsOf(patient)) expect(values.has(secret), `${file}: ${secret}`).toBe(false);
      for (const id of asArray(patient.identifier).filter(isJsonObject)) {
        expect(text, file).not.toContain(String(id.value));
      }
      expect(text).not.toContain(String(patient.id));
      expect(text).not.toContain(String(patient.birthDate));
      for (const t of asArray(patient.telecom).filter(isJsonObject))
        expect(text).not.toContain(String(t.value));
    }
  });

  it('shifts all of a person’s dates by one offset, so intervals are kept', () => {
    const offsets = new Set<number>();
    for (const { file, source, analytics: released } of cases) {
      const perPerson = new Set<number>();
      source.forEach((src, i) => {
        const dst = released.results[i]?.resource;
        if (!dst) return;
        for (const [a, b] of datePairs(src, dst)) {
          const da = dayNumber(a);
          const db = dayNumber(b);
          if (da !== undefined && db !== undefined) perPerson.add(db - da);
        }
      });
      expect(perPerson.size, file).toBe(1);
      const [offset] = [...perPerson] as [number];
      expect(Math.abs(offset)).toBeLessThanOrEqual(180);
      expect(offset).not.toBe(0);
      offsets.add(offset);
    }
    // Different people, different offsets.
    expect(offsets.size).toBeGreaterThan(Math.min(5, cases.length - 2));
  });

  it('releases valid FHIR R4 (every resource of the first bundles, every patient)', () => {
    const sample = cases.slice(0, 5).flatMap((c) => bundleResources(c.analytics.bundle));
    const patients = cases.map((c) => c.analytics.results[0]?.resource).filter(isJsonObject);
    for (const resource of [...sample, ...patients]) {
      const verdict = validateFhirResource(resource);
      expect(
        verdict.ok,
        `${resource.resourceType}: ${verdict.ok ? '' : JSON.stringify(verdict.issues)}`,
      ).toBe(true);
    }
    expect(sample.length).toBeGreaterThan(100);
  });

  it('withholds what the rule set does not release and says so', () => {
    const released = cases[0]?.analytics as AnonymizedBundle;
    const types = new Set(bundleResources(released.bundle).map((r) => r.resourceType));
    expect(types.has('Claim') || types.has('Organization') || types.has('Practitioner')).toBe(false);
    expect(released.withheld).toBeGreaterThan(0);
    expect(
      released.warnings.every((w) => w.code === 'ANON_RESOURCE_SUPPRESSED' || w.severity === 'warning'),
    ).toBe(true);
  });
});

describe('release risk and aggregates over the Synthea patients', () => {
  it('computes k on the crm release and refuses it below the threshold', () => {
    const released = cases.map((c) => anonymize(c.patient, crm, ctx).resource).filter(isJsonObject);
    const rows = tuplesFromResources(released, {
      gender: 'Patient.gender',
      birthYear: 'Patient.birthDate',
      zip3: 'Patient.address.first().postalCode',
    });
    const report = assessRisk(rows, { quasiIdentifiers: ['gender', 'birthYear', 'zip3'] });
    const counts = new Map<string, number>();
    for (const r of rows) {
      const key = `${r.gender}|${r.birthYear ?? '*'}|${r.zip3 ?? '*'}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect(report.k).toBe(Math.min(...counts.values()));
    expect(report.uniques).toBe([...counts.values()].filter((n) => n === 1).length);
    let error: unknown;
    try {
      enforceRisk(report, { minK: 5, maxProsecutorRisk: 0.2 });
    } catch (err) {
      error = err;
    }
    expect(isSluiceError(error) && error.code).toBe('ANON_RISK_EXCEEDED');
    // Coarser: gender alone over a release of this size passes k >= 5.
    expect(() => enforceRisk(assessRisk(rows, { quasiIdentifiers: ['gender'] }), { minK: 5 })).not.toThrow();
  });

  it('publishes age band × gender counts with small cells and their complements hidden', () => {
    const rows = cases.map((c) => ({
      band: ageBand(ageInYears(String(c.patient.birthDate), ctx.asOf) as number, 20),
      gender: c.patient.gender as string,
    }));
    const table = aggregateTwoWay(rows, 'band', 'gender', 5);
    const hidden = table.suppression.map((row) => row.map((m) => m !== null));
    expect(determinedCells(hidden)).toEqual([]);
    table.cells.forEach((row, r) => {
      row.forEach((v, c) => {
        const truth = rows.filter((x) => x.band === table.rows[r] && x.gender === table.cols[c]).length;
        if (truth > 0 && truth < 5) expect(v).toBeNull();
        if (v !== null) expect(v).toBe(truth);
      });
    });
    expect(table.rows).toContain('90+');
  });
});

const DATE_FIELDS = [
  'effectiveDateTime',
  'issued',
  'onsetDateTime',
  'recordedDate',
  'authoredOn',
  'occurrenceDateTime',
];

/** (source, released) pairs of the same date elements. */
function datePairs(src: JsonObject, dst: JsonObject): [string, string][] {
  const out: [string, string][] = [];
  for (const f of DATE_FIELDS) {
    if (typeof src[f] === 'string' && typeof dst[f] === 'string')
      out.push([src[f] as string, dst[f] as string]);
  }
  for (const p of ['period', 'performedPeriod']) {
    const a = src[p];
    const b = dst[p];
    if (!isJsonObject(a) || !isJsonObject(b)) continue;
    for (const e of ['start', 'end']) {
      if (typeof a[e] === 'string' && typeof b[e] === 'string') out.push([a[e] as string, b[e] as string]);
    }
  }
  return out;
}
