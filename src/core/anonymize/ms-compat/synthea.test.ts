import { createHmac } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR, REPO_ROOT } from '../../../testkit/data.ts';
import { loadR4Definitions } from '../../fhir/definitions.ts';
import { asArray, isJsonObject, type Json, type JsonObject } from '../../fhir/resource.ts';
import { validateFast } from '../../validate/compiled/validate.ts';
import { loadProfile } from '../profile.ts';
import { bundleResources, readBundle } from '../testing.ts';
import { msAnonymizerForProfile } from './index.ts';

/**
 * Upstream's own sample (Safe Harbor) config, copied unchanged into config/anonymize/ms, over Synthea
 * bundles of the shared public data: no direct identifier survives, every output is valid R4, and ids,
 * references and dates equal an independent computation of the upstream formulas.
 */

const BUNDLE_DIR = join(FIXTURES_DIR, 'shared-data', 'synthea', 'bundles');
const CONFIG = join(REPO_ROOT, 'config', 'anonymize', 'ms', 'configuration-sample.json');
const ENV = { SLUICE_MS_CRYPTOHASH_KEY: 'office-hash-key', SLUICE_MS_DATESHIFT_KEY: 'office-shift-key' };
const NOW = new Date('2025-01-01T00:00:00Z');
/** Every 6th bundle: ten patients, enough variety without the whole set's minutes on a shared machine. */
const EVERY = 6;

interface Case {
  readonly file: string;
  readonly source: JsonObject;
  readonly output: JsonObject;
}
let cases: Case[] = [];

beforeAll(() => {
  loadR4Definitions();
  const engine = msAnonymizerForProfile(loadProfile(CONFIG), ENV, { now: NOW });
  cases = readdirSync(BUNDLE_DIR)
    .filter((f) => f.endsWith('.json') || f.endsWith('.json.gz'))
    .sort()
    .filter((_, i) => i % EVERY === 0)
    .map((file) => {
      const source = readBundle(join(BUNDLE_DIR, file));
      const out = engine.anonymize(source);
      if (!out.resource) throw new Error(`${file} withheld: ${JSON.stringify(out.warnings)}`);
      return { file, source, output: out.resource };
    });
}, 120_000);

function strings(value: Json | undefined, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (isJsonObject(value)) for (const v of Object.values(value)) strings(v, out);
  return out;
}

function hmac(input: string): string {
  return createHmac('sha256', ENV.SLUICE_MS_CRYPTOHASH_KEY).update(input).digest('hex');
}

function offset(prefix: string): number {
  let o = 0;
  for (const b of new TextEncoder().encode(prefix + ENV.SLUICE_MS_DATESHIFT_KEY)) o = (o * 131 + b) % 101;
  return o - 50;
}

describe('the upstream sample config over Synthea bundles', () => {
  it('reads a sample of the bundles', () => {
    expect(cases.length).toBeGreaterThanOrEqual(8);
  });

  it('leaves no direct identifier of the patient in the output', () => {
    for (const c of cases) {
      const patient = bundleResources(c.source).find((r) => r.resourceType === 'Patient') as JsonObject;
      const secrets: [string, string][] = [];
      for (const name of asArray(patient.name).filter(isJsonObject)) {
        for (const part of [...asArray(name.given), name.family]) {
          if (typeof part === 'string') secrets.push(['name', part]);
        }
      }
      for (const id of asArray(patient.identifier).filter(isJsonObject)) {
        if (typeof id.value === 'string') secrets.push(['identifier', id.value]);
      }
      for (const t of asArray(patient.telecom).filter(isJsonObject)) {
        if (typeof t.value === 'string') secrets.push(['telecom', t.value]);
      }
      for (const a of asArray(patient.address).filter(isJsonObject)) {
        for (const line of asArray(a.line)) if (typeof line === 'string') secrets.push(['street', line]);
        if (typeof a.city === 'string') secrets.push(['city', a.city]);
        if (typeof a.postalCode === 'string' && /\d{5}/.test(a.postalCode) && !a.postalCode.endsWith('00')) {
          secrets.push(['zip', a.postalCode]);
        }
      }
      if (typeof patient.birthDate === 'string') secrets.push(['birthDate', patient.birthDate]);
      if (typeof patient.id === 'string') secrets.push(['id', patient.id]);
      const values = new Set(strings(c.output));
      const text = JSON.stringify(c.output);
      for (const [label, secret] of secrets) {
        expect(values.has(secret), `${c.file}: ${label} survived`).toBe(false);
        if (secret.length >= 6)
          expect(text.includes(secret), `${c.file}: ${label} survived in text`).toBe(false);
      }
    }
  });

  it('writes well-formed R4: the only errors are required elements the upstream config itself removes', () => {
    // Upstream's sample redacts Reference.display, CodeableConcept.text, Coding.code, request.url and dates
    // of people over 89 — all of which R4 requires in some places. Any other error (a bad id, date or
    // type produced by hashing or shifting) would be ours.
    const explained = new Set([
      'Bundle.entry.request.url VAL_CARDINALITY',
      'Claim.insurance.coverage VAL_CARDINALITY',
      'Claim.created VAL_CARDINALITY',
      'ExplanationOfBenefit.insurer VAL_CARDINALITY',
      'ExplanationOfBenefit.contained.payor VAL_CARDINALITY',
      'ExplanationOfBenefit.provider VAL_CARDINALITY',
      'ExplanationOfBenefit.careTeam.provider VAL_CARDINALITY',
      'ExplanationOfBenefit.created VAL_CARDINALITY',
      'Goal.description VAL_CARDINALITY',
      'Condition VAL_INVARIANT',
    ]);
    let checked = 0;
    for (const c of cases) {
      for (const resource of [c.output, ...bundleResources(c.output)]) {
        checked++;
        const unexplained = validateFast(resource)
          .filter((i) => i.severity === 'error')
          .map((i) => `${i.path.replace(/\[\d+\]/g, '')} ${i.code}`)
          .filter((key) => !explained.has(key) && !key.startsWith('Bundle.entry.resource'));
        expect(unexplained, `${c.file} ${String(resource.resourceType)}`).toEqual([]);
      }
    }
    expect(checked).toBeGreaterThan(500);
  });

  it('hashes ids and the id part of references as HMAC-SHA256 hex of the configured key', () => {
    for (const c of cases) {
      const sources = bundleResources(c.source);
      const outputs = bundleResources(c.output);
      expect(outputs.length).toBe(sources.length);
      sources.forEach((source, i) => {
        expect(outputs[i]?.id).toBe(hmac(String(source.id)));
      });
      const sourceEntries = asArray(c.source.entry).filter(isJsonObject);
      const patientIndex = sources.findIndex((r) => r.resourceType === 'Patient');
      const fullUrl = String(sourceEntries[patientIndex]?.fullUrl);
      const encounter = outputs.find((r) => r.resourceType === 'Encounter');
      const subject = isJsonObject(encounter?.subject) ? encounter.subject.reference : undefined;
      expect(subject).toBe(`urn:uuid:${hmac(fullUrl.replace('urn:uuid:', ''))}`);
      expect(
        asArray(c.output.entry)
          .filter(isJsonObject)
          .some((e) => 'fullUrl' in e),
      ).toBe(false);
    }
  });

  it('shifts dates by the offset of the bundle id (none in Synthea: the key alone), times zeroed', () => {
    for (const c of cases) {
      // Upstream takes the prefix from the root of the input: the Bundle, whose id is absent here.
      const prefix = typeof c.source.id === 'string' ? hmac(c.source.id) : '';
      const days = offset(prefix);
      const source = bundleResources(c.source).find((r) => r.resourceType === 'Patient') as JsonObject;
      const output = bundleResources(c.output).find((r) => r.resourceType === 'Patient') as JsonObject;
      const [y, m, d] = String(source.birthDate).split('-').map(Number) as [number, number, number];
      const expected = new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
      expect(output.birthDate, c.file).toBe(expected);
      const sourceEnc = bundleResources(c.source).find((r) => r.resourceType === 'Encounter') as JsonObject;
      const outEnc = bundleResources(c.output).find((r) => r.resourceType === 'Encounter') as JsonObject;
      const start = String((sourceEnc.period as JsonObject).start);
      const shifted = String((outEnc.period as JsonObject).start);
      const [sy, sm, sd] = start.slice(0, 10).split('-').map(Number) as [number, number, number];
      expect(shifted.slice(0, 10)).toBe(new Date(Date.UTC(sy, sm - 1, sd + days)).toISOString().slice(0, 10));
      expect(shifted.slice(10)).toBe(start.slice(10).replace(/^T\d\d:\d\d:\d\d/, 'T00:00:00'));
    }
  });

  it('the config file is upstream’s sample, unchanged in content', () => {
    const config = JSON.parse(readFileSync(CONFIG, 'utf8')) as JsonObject;
    const rules = asArray(config.fhirPathRules).filter(isJsonObject);
    expect(rules[0]).toEqual({ path: "nodesByType('Extension')", method: 'redact' });
    expect(rules.at(-1)).toEqual({ path: "nodesByType('ContactPoint')", method: 'redact' });
    expect((config.parameters as JsonObject).cryptoHashKey).toBe('');
  });
});
