import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readResourceFile } from '../../adapters/files/resource-files.ts';
import { SAMPLE_DATA_DIR } from '../../testkit/data.ts';
import { loadR4Definitions } from '../fhir/definitions.ts';
import { redactQuoted, validateFhirResource } from './fhir-schema.ts';

const SYNTHEA = join(SAMPLE_DATA_DIR, 'synthea');

async function bundleResources(prefix: string): Promise<Record<string, unknown>[]> {
  const file = readdirSync(SYNTHEA).find((f) => f.startsWith(prefix)) as string;
  const out: Record<string, unknown>[] = [];
  for await (const item of readResourceFile(join(SYNTHEA, file))) {
    if (item.kind === 'resource') out.push(item.resource);
  }
  return out;
}

/** A value no validator message could contain by chance: used to prove values are never quoted. */
const CANARY = 'Zqxj7Canary';

describe('validateFhirResource', () => {
  let bundle: Record<string, unknown>[] = [];
  let patient: Record<string, unknown> = {};

  beforeAll(async () => {
    loadR4Definitions();
    bundle = await bundleResources('Abdul_Koepp');
    patient = bundle.find((r) => r.resourceType === 'Patient') as Record<string, unknown>;
  });

  it('accepts a real Synthea Patient and every other resource of its bundle', () => {
    const outcome = validateFhirResource(patient);
    expect(outcome).toEqual({ ok: true, value: patient, warnings: [] });
    expect(bundle.length).toBeGreaterThan(100);
    for (const resource of bundle) {
      const result = validateFhirResource(resource);
      expect(result.ok, `${String(resource.resourceType)} should validate`).toBe(true);
    }
  });

  it('refuses a malformed birthDate as REC_INVALID_FHIR at Patient.birthDate, without quoting it', () => {
    const bad = { ...patient, birthDate: `not-a-date-${CANARY}` };
    const outcome = validateFhirResource(bad);
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.code).toBe('REC_INVALID_FHIR');
    expect(outcome.issues.map((i) => i.path)).toContain('Patient.birthDate');
    expect(outcome.issues.every((i) => i.code === 'REC_INVALID_FHIR')).toBe(true);
    expect(JSON.stringify(outcome.issues)).not.toContain(CANARY);
  });

  it('plain "not-a-date" is refused too', () => {
    const outcome = validateFhirResource({ ...patient, birthDate: 'not-a-date' });
    expect(outcome.ok ? [] : outcome.issues.map((i) => i.path)).toEqual(['Patient.birthDate']);
  });

  it('refuses an unknown element, naming its path, and lists every problem at once', () => {
    const bad = {
      ...patient,
      birthDate: 'not-a-date',
      favouriteColour: CANARY,
      gender: 42,
      communication: [{}],
    };
    const outcome = validateFhirResource(bad);
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    const paths = outcome.issues.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining(['Patient.birthDate', 'Patient.favouriteColour', 'Patient.gender']),
    );
    expect(paths.some((p) => p.startsWith('Patient.communication[0]'))).toBe(true);
    for (const i of outcome.issues) {
      expect(i.severity).toBe('error');
      expect(i.message).not.toContain(CANARY);
      expect(i.message.length).toBeGreaterThan(0);
    }
  });

  it('redacts quoted names from messages (the unknown key is only in the path)', () => {
    const outcome = validateFhirResource({ resourceType: 'Patient', [CANARY]: true });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.issues[0]?.path).toBe(`Patient.${CANARY}`);
    expect(outcome.issues[0]?.message).toBe('Invalid additional property "…"');
  });

  it('returns validator warnings on success (two values for one choice element)', () => {
    const outcome = validateFhirResource({
      resourceType: 'Patient',
      id: 'w1',
      deceasedBoolean: true,
      deceasedDateTime: '2020-01-01',
    });
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    expect(outcome.warnings).toHaveLength(1);
    expect(outcome.warnings[0]?.severity).toBe('warning');
    expect(outcome.warnings[0]?.message).not.toContain('deceasedDateTime');
  });

  it('refuses an unknown resource type as REC_INVALID_FHIR', () => {
    const outcome = validateFhirResource({ resourceType: 'NotAType', id: 'x' });
    expect(outcome.ok ? 'ok' : outcome.code).toBe('REC_INVALID_FHIR');
  });

  it('refuses anything that is not a resource object as REC_UNPARSEABLE', () => {
    for (const value of [null, undefined, 42, 'Patient', [patient], {}, { resourceType: 7 }]) {
      const outcome = validateFhirResource(value);
      expect(outcome.ok, JSON.stringify(value)).toBe(false);
      if (outcome.ok) continue;
      expect(outcome.code).toBe('REC_UNPARSEABLE');
      expect(outcome.issues).toHaveLength(1);
    }
  });
});

describe('redactQuoted', () => {
  it('replaces every double-quoted span and keeps the rest', () => {
    expect(redactQuoted('Invalid reference: got "Foo", expected "Bar", "Baz"')).toBe(
      'Invalid reference: got "…", expected "…", "…"',
    );
    expect(redactQuoted('no quotes here')).toBe('no quotes here');
    expect(redactQuoted('""')).toBe('"…"');
  });
});
