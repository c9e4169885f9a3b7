import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR } from '../../testkit/data.ts';
import { loadR4Definitions } from '../fhir/definitions.ts';
import { asArray, isJsonObject, type Json, type JsonObject } from '../fhir/resource.ts';
import { validateFhirResource } from '../validate/fhir-schema.ts';
import { anonymizeContextFromEnv } from './env-context.ts';
import { ageInYears, MAX_DISCLOSED_AGE } from './generalize.ts';
import { anonymizeBundle } from './pipeline.ts';
import { loadProfile } from './profile.ts';
import { bundleResources, readBundle } from './testing.ts';

/**
 * Must-show of issue #8: no direct identifier of the input survives the Safe Harbor profile, over every
 * Synthea bundle of the shared public data kept in the repository.
 */

const BUNDLE_DIR = join(FIXTURES_DIR, 'shared-data', 'synthea', 'bundles');
const profile = loadProfile('safe-harbor');
const ctx = anonymizeContextFromEnv(profile, {}, new Date('2025-01-01T00:00:00Z'));

interface Case {
  readonly file: string;
  readonly source: JsonObject;
  readonly patient: JsonObject;
  readonly released: JsonObject[];
  readonly text: string;
  readonly values: ReadonlySet<string>;
}
let cases: Case[] = [];

beforeAll(() => {
  loadR4Definitions();
  cases = readdirSync(BUNDLE_DIR)
    .filter((f) => f.endsWith('.json') || f.endsWith('.json.gz'))
    .sort()
    .map((f) => {
      const file = join(BUNDLE_DIR, f);
      const source = readBundle(file);
      const patient = bundleResources(source).find((r) => r.resourceType === 'Patient') as JsonObject;
      const released = bundleResources(anonymizeBundle(source, profile.ruleSet, ctx).bundle);
      return {
        file: f,
        source,
        patient,
        released,
        text: JSON.stringify(released),
        values: new Set(strings(released)),
      };
    });
});

function strings(value: Json | undefined, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (isJsonObject(value)) for (const v of Object.values(value)) strings(v, out);
  return out;
}

/** Identifier values by their v2 type code (SS, MR, DL, PPN…) and the Synthea record id. */
function identifiers(patient: JsonObject): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const id of asArray(patient.identifier).filter(isJsonObject)) {
    const type = isJsonObject(id.type) ? asArray(id.type.coding).filter(isJsonObject)[0]?.code : undefined;
    const key = typeof type === 'string' ? type : String(id.system ?? 'other');
    if (typeof id.value === 'string') out.set(key, [...(out.get(key) ?? []), id.value]);
  }
  return out;
}

/** Every direct identifier of the patient in the source bundle, labelled for the failure message. */
function secretsOf(c: Case): [label: string, value: string][] {
  const p = c.patient;
  const out: [string, string][] = [];
  for (const name of asArray(p.name).filter(isJsonObject)) {
    for (const part of [...asArray(name.given), ...asArray(name.prefix), name.family]) {
      if (typeof part === 'string') out.push(['name', part]);
    }
  }
  for (const [type, values] of identifiers(p)) for (const v of values) out.push([`identifier ${type}`, v]);
  for (const t of asArray(p.telecom).filter(isJsonObject)) {
    if (typeof t.value === 'string') out.push([`telecom ${String(t.system)}`, t.value]);
  }
  for (const a of asArray(p.address).filter(isJsonObject)) {
    for (const line of asArray(a.line)) if (typeof line === 'string') out.push(['street', line]);
    if (typeof a.city === 'string') out.push(['city', a.city]);
    if (typeof a.postalCode === 'string') out.push(['zip', a.postalCode]);
  }
  for (const e of asArray(p.extension).filter(isJsonObject)) {
    if (typeof e.valueString === 'string' && String(e.url).includes('Maiden'))
      out.push(['maiden name', e.valueString]);
    if (isJsonObject(e.valueAddress) && typeof e.valueAddress.city === 'string') {
      out.push(['birth place', e.valueAddress.city]);
    }
  }
  for (const entry of asArray(c.source.entry).filter(isJsonObject)) {
    if (typeof entry.fullUrl === 'string') out.push(['fullUrl', entry.fullUrl]);
    if (isJsonObject(entry.resource) && typeof entry.resource.id === 'string') {
      out.push([`${String(entry.resource.resourceType)} id`, entry.resource.id]);
    }
  }
  return out;
}

/** A secret as a whole token: a short value must not match inside a longer code. */
function token(secret: string): RegExp {
  return new RegExp(`(^|[^A-Za-z0-9])${secret.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^A-Za-z0-9])`);
}

const DATE_LIKE = /^\d{4}-\d{2}/;

describe('safe-harbor over every Synthea bundle', () => {
  it('covers the whole shared set', () => {
    expect(cases.length).toBe(60);
    expect(cases.every((c) => c.released.length > 10)).toBe(true);
  });

  it('leaves no name, SSN, MRN, licence, passport, phone, e-mail, street, city, ZIP or resource id', () => {
    const kinds = new Set<string>();
    for (const c of cases) {
      const secrets = secretsOf(c);
      for (const [label, secret] of secrets) {
        kinds.add(
          label.split(' ')[0] === 'identifier' || label.startsWith('telecom')
            ? label
            : (label.split(' ').at(-1) as string),
        );
        expect(c.text, `${c.file}: ${label}`).not.toMatch(token(secret));
      }
    }
    // The search did look for each kind (Synthea patients carry all of them).
    for (const kind of [
      'name',
      'identifier SS',
      'identifier MR',
      'identifier DL',
      'identifier PPN',
      'telecom phone',
      'street',
      'city',
      'zip',
      'id',
      'fullUrl',
    ]) {
      expect(kinds, kind).toContain(kind);
    }
  });

  it('leaves no e-mail, fax, contact person, photo or employer either (Synthea has none: added here)', () => {
    const patient: JsonObject = {
      ...(cases[0]?.patient as JsonObject),
      telecom: [
        { system: 'email', value: 'jo.sample@example.org' },
        { system: 'fax', value: '555-0199' },
      ],
      contact: [
        { name: { family: 'Relativeson', given: ['Kin'] }, organization: { display: 'Employer Inc' } },
      ],
      photo: [{ contentType: 'image/png', data: 'aGVsbG8=' }],
    };
    const released = bundleResources(
      anonymizeBundle(
        { resourceType: 'Bundle', type: 'collection', entry: [{ resource: patient }] },
        profile.ruleSet,
        ctx,
      ).bundle,
    );
    const text = JSON.stringify(released);
    expect(released).toHaveLength(1);
    for (const secret of [
      'jo.sample@example.org',
      '555-0199',
      'Relativeson',
      'Kin',
      'Employer Inc',
      'aGVsbG8=',
    ]) {
      expect(text).not.toMatch(token(secret));
    }
  });

  it('keeps no exact date: every date is a year (or the first instant of its year)', () => {
    let dates = 0;
    for (const c of cases) {
      const sourceDates = strings(bundleResources(c.source)).filter((s) => DATE_LIKE.test(s));
      for (const d of sourceDates) expect(c.values.has(d), `${c.file}: ${d}`).toBe(false);
      for (const value of c.values) {
        if (!DATE_LIKE.test(value)) continue;
        dates++;
        expect(value, c.file).toMatch(/^\d{4}-01-01T00:00:00Z$/);
      }
      expect(c.values.has(String(c.patient.birthDate)), c.file).toBe(false);
    }
    // Instants exist (Observation.issued), so the check above did run.
    expect(dates).toBeGreaterThan(0);
  });

  it('gives people over 89 no birth year, others only the year', () => {
    let over = 0;
    for (const c of cases) {
      const out = c.released.find((r) => r.resourceType === 'Patient') as JsonObject;
      const age = ageInYears(String(c.patient.birthDate), ctx.asOf) as number;
      if (age > MAX_DISCLOSED_AGE) {
        over++;
        expect(out.birthDate, c.file).toBeUndefined();
      } else {
        expect(out.birthDate, c.file).toBe(String(c.patient.birthDate).slice(0, 4));
      }
    }
    expect(over).toBeGreaterThan(0);
  });

  it('reduces addresses to state and ZIP3, restricted areas as 000, and drops narrative and free text', () => {
    const restricted = ctx.restrictedZip3?.prefixes ?? new Set<string>();
    let zips = 0;
    for (const c of cases) {
      const out = c.released.find((r) => r.resourceType === 'Patient') as JsonObject;
      for (const a of asArray(out.address).filter(isJsonObject)) {
        expect(
          Object.keys(a).every((k) => ['state', 'country', 'postalCode'].includes(k)),
          c.file,
        ).toBe(true);
        const zip = asArray(c.patient.address).filter(isJsonObject)[0]?.postalCode;
        if (typeof zip !== 'string') {
          expect(a.postalCode, c.file).toBeUndefined();
          continue;
        }
        zips++;
        expect(a.postalCode, c.file).toBe(restricted.has(zip.slice(0, 3)) ? '000' : zip.slice(0, 3));
      }
      for (const r of c.released) {
        expect(r.text, c.file).toBeUndefined();
        expect(r.id, c.file).toBeUndefined();
        expect(r.identifier, c.file).toBeUndefined();
      }
    }
    expect(zips).toBeGreaterThan(cases.length / 2);
  });

  it('releases FHIR R4 that is valid except for the required links it had to remove', () => {
    // Safe Harbor removes every reference (a record number); where R4 requires one (Condition.subject),
    // that is the only deviation: nothing else about the released resources is malformed.
    const sample = cases.slice(0, 3).flatMap((c) => c.released);
    let missingLinks = 0;
    for (const resource of sample) {
      const verdict = validateFhirResource(resource);
      if (verdict.ok) continue;
      for (const issue of verdict.issues) {
        const element = issue.path.split('.').at(-1) ?? '';
        expect(issue.message, `${issue.path}`).toBe('Missing required property');
        expect(['subject', 'patient', 'beneficiary'], issue.path).toContain(element);
        missingLinks++;
      }
    }
    expect(sample.length).toBeGreaterThan(100);
    expect(missingLinks).toBeGreaterThan(0);
  });
});
