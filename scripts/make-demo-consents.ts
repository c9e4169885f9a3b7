/**
 * Writes examples/data/consents/Consent.ndjson: FHIR R4 privacy consents for the sample patients, so
 * the demo shows consent at work. Deterministic (ordered by patient id): most patients permit
 * disclosure for health-care operations to the CRM, one opts out, one has no consent (default deny).
 *   node scripts/make-demo-consents.ts
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listResourceFiles, readResourceFile } from '../src/adapters/files/resource-files.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const patients: string[] = [];
for (const file of await listResourceFiles([join(ROOT, 'examples', 'data', 'synthea')])) {
  for await (const item of readResourceFile(file)) {
    if (item.kind !== 'resource') continue;
    const r = item.resource as { resourceType?: string; id?: string; deceasedDateTime?: string };
    if (r.resourceType === 'Patient' && r.id && !r.deceasedDateTime) patients.push(r.id);
  }
}
patients.sort();

const consent = (patientId: string, index: number, type: 'permit' | 'deny') => ({
  resourceType: 'Consent',
  id: `demo-consent-${index + 1}`,
  status: 'active',
  scope: {
    coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }],
  },
  category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Patient Consent' }] }],
  patient: { reference: `Patient/${patientId}` },
  dateTime: '2026-01-15T09:00:00Z',
  policyRule: {
    coding: [
      {
        system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode',
        code: type === 'permit' ? 'OPTIN' : 'OPTOUT',
      },
    ],
  },
  provision: {
    type,
    period: { start: '2026-01-15' },
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
});

// The last patient has no consent at all; the one before it opted out.
const lines = patients
  .slice(0, -1)
  .map((id, i, all) => JSON.stringify(consent(id, i, i === all.length - 1 ? 'deny' : 'permit')));
const out = join(ROOT, 'examples', 'data', 'consents', 'Consent.ndjson');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${lines.join('\n')}\n`);
process.stdout.write(`wrote ${lines.length} consents for ${patients.length} living patients to ${out}\n`);
