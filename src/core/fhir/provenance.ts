/**
 * What the edge and each stage know about one delivered record: the facts its FHIR Provenance is made
 * of. The state store keeps these facts (a few hundred bytes) rather than the resource (several
 * kilobytes of fixed FHIR structure); `buildProvenance` turns them into the same resource every time.
 */
export interface ProvenanceFacts {
  /** The Provenance's id, fixed when the record is delivered. */
  readonly id: string;
  /** When the delivery was recorded (the page's commit). */
  readonly recorded: string;
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
  /** The target records written, by object and external id. */
  readonly targets: readonly { readonly object: string; readonly externalId: string }[];
}

const STEP = 'https://sluice.dev/fhir/StructureDefinition/provenance-step';
const PSEUDONYM = /^p[a-z2-7]{32}$/;

/**
 * A FHIR R4 Provenance for one delivered record: stamped at the edge (source system, event, id and
 * version, time, adapter identity), then one step per stage (mapping version, consent decision and
 * basis, validation result, anonymisation, batch). Targets are the CRM records by external id.
 */
export function buildProvenance(p: ProvenanceFacts): Record<string, unknown> {
  const patientData = PSEUDONYM.test(p.entity);
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
    id: p.id,
    target: p.targets.map((t) => ({
      identifier: { system: `urn:sluice:${p.targetSystem}:${t.object}`, value: t.externalId },
    })),
    recorded: p.recorded,
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
