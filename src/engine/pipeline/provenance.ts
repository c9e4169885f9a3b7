import { randomUUID } from 'node:crypto';
import type { TargetWrite } from '../../core/mapping/canonical-to-veeva.ts';

/** What the edge and each stage know about one delivered record, for its Provenance. */
export interface ProvenanceInput {
  readonly flow: string;
  readonly runId: string;
  readonly sourceSystem: string;
  readonly targetSystem: string;
  /** `Type/id` for provider data, the pseudonym for patient data (never a clear patient id). */
  readonly entity: string;
  /** `v:versionId|lastUpdated` or a content hash: the exact source version read. */
  readonly versionKey: string;
  /** Where it was read (search page or export file and line): the source event. */
  readonly origin: string;
  readonly readAt: string;
  /** The adapter identity that read it (backend-services client id). */
  readonly readBy: string;
  readonly mappingVersion: string;
  readonly validation: 'valid' | 'valid-with-warnings';
  readonly consent?: { readonly decision: string; readonly policy: string; readonly basis: string };
  readonly anonymization: string;
  readonly batchId?: string;
  readonly purpose: string;
  readonly writes: readonly TargetWrite[];
}

const STEP = 'https://sluice.dev/fhir/StructureDefinition/provenance-step';

/**
 * A FHIR R4 Provenance for one delivered record: stamped at the edge (source system, event, id and
 * version, time, adapter identity), then one step per stage (mapping version, consent decision and
 * basis, validation result, anonymisation, batch). Targets are the CRM records by external id.
 */
export function buildProvenance(p: ProvenanceInput): Record<string, unknown> {
  const patientData = /^p[a-z2-7]{32}$/.test(p.entity);
  const steps: [string, string][] = [
    ['read', `${p.origin} by ${p.readBy}`],
    ['validate', p.validation],
    ['map', p.mappingVersion],
    ...(p.consent
      ? ([['consent', `${p.consent.decision} (${p.consent.basis}) under ${p.consent.policy}`]] as [
          string,
          string,
        ][])
      : []),
    ['anonymize', p.anonymization],
    ...(p.batchId ? ([['batch', p.batchId]] as [string, string][]) : []),
  ];
  return {
    resourceType: 'Provenance',
    id: randomUUID(),
    target: p.writes.map((w) => ({
      identifier: { system: `urn:sluice:${p.targetSystem}:${w.object}`, value: w.externalId },
    })),
    recorded: new Date().toISOString(),
    occurredDateTime: p.readAt,
    ...(p.consent ? { policy: [`urn:sluice:consent-policy:${p.consent.policy}`] } : {}),
    reason: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: p.purpose }] }],
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }],
    },
    agent: [
      {
        type: {
          coding: [
            {
              system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type',
              code: 'assembler',
            },
          ],
        },
        who: { identifier: { system: 'urn:sluice:flow', value: p.flow } },
      },
      {
        type: {
          coding: [
            {
              system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type',
              code: 'custodian',
            },
          ],
        },
        who: { identifier: { system: 'urn:sluice:system', value: p.sourceSystem } },
      },
    ],
    entity: [
      {
        role: 'source',
        what: patientData
          ? { identifier: { system: 'urn:sluice:pseudonym', value: p.entity } }
          : { identifier: { system: `urn:sluice:${p.sourceSystem}`, value: `${p.entity}|${p.versionKey}` } },
      },
    ],
    extension: steps.map(([stage, value]) => ({
      url: STEP,
      extension: [
        { url: 'stage', valueCode: stage },
        { url: 'detail', valueString: value },
      ],
    })),
  };
}
