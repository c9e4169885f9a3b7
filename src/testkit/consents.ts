import type { Consent } from '@medplum/fhirtypes';

/**
 * A FHIR R4 privacy Consent for one patient: the flow's purpose (HOPERAT) permitted or denied. Tests
 * build their consent directives with it; `lastUpdated` (also the versionId) orders versions.
 */
export function privacyConsent(
  patientId: string,
  type: 'permit' | 'deny',
  options: { lastUpdated?: string; id?: string } = {},
): Consent {
  return {
    resourceType: 'Consent',
    id: options.id ?? `c-${patientId}`,
    ...(options.lastUpdated === undefined
      ? {}
      : { meta: { versionId: options.lastUpdated, lastUpdated: options.lastUpdated } }),
    status: 'active',
    scope: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }],
    },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patientId}` },
    dateTime: '2026-01-01T00:00:00Z',
    provision: {
      type,
      purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HOPERAT' }],
    },
  };
}
