import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SAMPLE_DATA_DIR } from '../../testkit/data.ts';
import type { JsonObject } from '../fhir/resource.ts';
import { canonicalToVeeva, type TargetWrite } from '../mapping/canonical-to-veeva.ts';
import { fhirToCanonical } from '../mapping/fhir-to-canonical.ts';
import type { CanonicalRecord } from '../model/canonical.ts';
import { asSystemName } from '../model/ids.ts';
import { createMatrixEngine, isLegacyKind } from './engine.ts';
import {
  epicContext,
  readResources,
  syntheaPatients,
  TEST_PSEUDONYM_KEY,
  VEEVA_CONFIG,
  veevaContext,
} from './testing.ts';

const engine = createMatrixEngine();
const RESTRICTED = new Set([
  '036',
  '059',
  '102',
  '203',
  '556',
  '692',
  '790',
  '821',
  '823',
  '830',
  '831',
  '878',
  '879',
  '884',
  '890',
  '893',
]);
const legacyCtx = {
  system: asSystemName('epic'),
  verifiedAt: '2025-06-01T00:00:00.000Z',
  asOf: new Date('2025-06-01T00:00:00Z'),
  pseudonymKey: TEST_PSEUDONYM_KEY,
  restrictedZip3: RESTRICTED,
};

function withoutMapping(record: CanonicalRecord): CanonicalRecord {
  const { mapping: _mapping, ...source } = record.source;
  return { ...record, source } as CanonicalRecord;
}

/** The lineage note names the mapping version; 1.1.0 of the matrix replaces 1.0.0 of the code. */
function sameLineageVersion(writes: readonly TargetWrite[]): unknown {
  return JSON.parse(
    JSON.stringify(writes).replaceAll('canonical-to-veeva@1.1.0', 'canonical-to-veeva@1.0.0'),
  );
}

describe('matrix engine ≡ legacy mapping (fhir-r4-to-canonical@1.0.0, canonical-to-veeva@1.0.0)', () => {
  const resources: JsonObject[] = [];
  beforeAll(async () => {
    for (const type of ['Practitioner', 'Organization']) {
      resources.push(...(await readResources(join(SAMPLE_DATA_DIR, 'directory', `${type}.ndjson.gz`))));
    }
    resources.push(...(await syntheaPatients()));
  });

  it('produces the same canonical record, warnings and Veeva writes for every sample resource', () => {
    const counts = { Practitioner: 0, Organization: 0, Patient: 0, failed: 0 };
    expect(resources.length).toBeGreaterThan(100);
    for (const resource of resources) {
      const legacy = fhirToCanonical(resource, legacyCtx);
      const matrix = engine.fhirToCanonical(resource, epicContext(RESTRICTED));
      const label = `${String(resource.resourceType)}/${String(resource.id)}`;
      expect(matrix.ok, label).toBe(legacy.ok);
      if (!legacy.ok || !matrix.ok) {
        counts.failed++;
        if (!legacy.ok && !matrix.ok) {
          expect(matrix.code, label).toBe(legacy.code);
          expect(matrix.issues.map((i) => i.code)).toEqual(legacy.issues.map((i) => i.code));
        }
        continue;
      }
      counts[resource.resourceType as 'Patient']++;
      expect(matrix.value.source.mapping).toBe('fhir-r4-to-canonical@1.2.0');
      if (!isLegacyKind(matrix.value)) throw new Error(`unexpected kind ${matrix.value.kind}`);
      expect(withoutMapping(matrix.value), label).toEqual(legacy.value);
      expect(matrix.warnings.map((w) => [w.code, w.path])).toEqual(
        legacy.warnings.map((w) => [w.code, w.path]),
      );
      const writes = engine.canonicalToVeeva(matrix.value, veevaContext());
      if (!writes.ok) throw new Error(`veeva mapping failed for ${label}: ${writes.code}`);
      expect(writes.value.mapping).toBe('canonical-to-veeva@1.1.0');
      expect(sameLineageVersion(writes.value.writes), label).toEqual(
        canonicalToVeeva(legacy.value, VEEVA_CONFIG),
      );
    }
    expect(counts.Practitioner).toBeGreaterThan(10);
    expect(counts.Organization).toBeGreaterThan(5);
    expect(counts.Patient).toBeGreaterThanOrEqual(9);
  });

  it('matches the legacy verdicts on bad identifiers and names', () => {
    const base: JsonObject = {
      resourceType: 'Practitioner',
      id: 'p1',
      name: [{ family: 'Doe', given: ['Jo'] }],
    };
    const cases: JsonObject[] = [
      { ...base, identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567890' }] },
      {
        ...base,
        identifier: [
          { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' },
          { system: 'http://hl7.org/fhir/sid/us-npi', value: '1245319599' },
        ],
      },
      { ...base, identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: ' 1234567893 ' }] },
      { resourceType: 'Practitioner', id: 'p2', name: [{ given: ['X'] }] },
      {
        resourceType: 'Practitioner',
        id: 'p3',
        name: [
          { use: 'old', family: 'Old' },
          { family: 'New', given: ['A', 'B'] },
        ],
      },
      { resourceType: 'Organization', id: 'o1' },
      {
        resourceType: 'Organization',
        id: 'o2',
        name: ' Acme ',
        active: false,
        address: [
          { use: 'old', city: 'X' },
          { line: ['', '1 Main'], postalCode: '02139' },
        ],
      },
    ];
    for (const resource of cases) {
      const legacy = fhirToCanonical(resource, legacyCtx);
      const matrix = engine.fhirToCanonical(resource, epicContext(RESTRICTED));
      expect(matrix.ok).toBe(legacy.ok);
      if (!legacy.ok && !matrix.ok) expect(matrix.code).toBe(legacy.code);
      if (legacy.ok && matrix.ok)
        expect(withoutMapping(matrix.value as CanonicalRecord)).toEqual(legacy.value);
    }
  });
});
