import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from '@medplum/fhirtypes';
import type { AuditKind, AuditOutcome, StoredAuditEntry } from './entry.ts';

/**
 * Audit entries as FHIR R4 AuditEvent resources, in the style of IHE Basic Audit Log Patterns (BALP):
 * DICOM event types (DCM 110xxx), ISO 21089 lifecycle and BALP authorization subtypes where they fit,
 * plus a Sluice subtype naming the entry kind exactly. Agents are the Sluice flow (source role) and the
 * recipient (destination role); entities are the pseudonymous subject (`what.identifier` only: there is
 * no resource to reference), the batch, the run, and the log entry itself (its leaf hash, so an
 * exported event can be tied to an inclusion proof).
 */

export interface FhirExportOptions {
  /** URI prefix of Sluice's identifier systems and code system (default `urn:sluice`). */
  readonly namespace?: string;
  /** AuditEvent.source.observer display (default `Sluice`). */
  readonly observer?: string;
  /** AuditEvent.source.site, e.g. the deployment name. */
  readonly site?: string;
  /** Prefix of AuditEvent.id; the id is prefix + seq (default `sluice-audit-`). */
  readonly idPrefix?: string;
}

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const ISO_21089 = 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle';
const BALP_AUTHZ = 'https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const SOURCE_TYPE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
const ACT_REASON = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';

const dcm = (code: string, display: string): Coding => ({ system: DCM, code, display });
const iso = (code: string, display: string): Coding => ({ system: ISO_21089, code, display });

interface KindCodes {
  readonly type: Coding;
  readonly subtype: readonly Coding[];
  readonly action: NonNullable<AuditEvent['action']>;
}

const APPLICATION_ACTIVITY = dcm('110100', 'Application Activity');
const SECURITY_ALERT = dcm('110113', 'Security Alert');

/** Per kind: event type, standard subtypes and action (C/R/U/D/E). A Record, so a new kind cannot be forgotten. */
export const KIND_CODES: Readonly<Record<AuditKind, KindCodes>> = {
  'access-decision': {
    type: SECURITY_ALERT,
    subtype: [
      {
        system: BALP_AUTHZ,
        code: 'AuthZ-Consent',
        display: 'Authorization Decision using Roles and Consent',
      },
    ],
    action: 'E',
  },
  send: {
    type: dcm('110106', 'Export'),
    subtype: [iso('disclose', 'Disclose Record Lifecycle Event')],
    action: 'R',
  },
  receive: {
    type: dcm('110107', 'Import'),
    subtype: [iso('receive', 'Receive Record Lifecycle Event')],
    action: 'C',
  },
  withhold: { type: SECURITY_ALERT, subtype: [], action: 'E' },
  quarantine: { type: APPLICATION_ACTIVITY, subtype: [], action: 'C' },
  release: { type: APPLICATION_ACTIVITY, subtype: [], action: 'U' },
  discard: {
    type: APPLICATION_ACTIVITY,
    subtype: [iso('destroy', 'Destroy/Delete Record Lifecycle Event')],
    action: 'D',
  },
  reidentify: {
    type: dcm('110110', 'Patient Record'),
    subtype: [iso('reidentify', 'Re-identify Record Lifecycle Event')],
    action: 'E',
  },
  'kill-switch': { type: SECURITY_ALERT, subtype: [], action: 'E' },
  'policy-change': { type: SECURITY_ALERT, subtype: [dcm('110129', 'Security Configuration')], action: 'U' },
  'token-issued': {
    type: dcm('110114', 'User Authentication'),
    subtype: [dcm('110122', 'Login')],
    action: 'E',
  },
  'run-start': { type: APPLICATION_ACTIVITY, subtype: [dcm('110120', 'Application Start')], action: 'E' },
  'run-end': { type: APPLICATION_ACTIVITY, subtype: [dcm('110121', 'Application Stop')], action: 'E' },
  'audit-access': { type: dcm('110101', 'Audit Log Used'), subtype: [], action: 'R' },
  'retention-prune': {
    type: dcm('110101', 'Audit Log Used'),
    subtype: [iso('destroy', 'Destroy/Delete Record Lifecycle Event')],
    action: 'D',
  },
};

/** FHIR audit-event-outcome: 0 success, 4 minor, 8 serious, 12 major failure; a denial is 8 as in BALP. */
export const OUTCOME_CODES: Readonly<Record<AuditOutcome, NonNullable<AuditEvent['outcome']>>> = {
  success: '0',
  denied: '8',
  'minor-failure': '4',
  'serious-failure': '8',
  'major-failure': '12',
};

export function toAuditEvent(entry: StoredAuditEntry, options: FhirExportOptions = {}): AuditEvent {
  const ns = options.namespace ?? 'urn:sluice';
  const codes = KIND_CODES[entry.kind];
  const purpose = entry.purpose ? [{ coding: [{ system: ACT_REASON, code: entry.purpose }] }] : undefined;

  const agents: AuditEventAgent[] = [
    {
      type: { coding: [dcm('110153', 'Source Role ID')] },
      who: { identifier: { system: `${ns}:flow`, value: entry.flow }, display: `Sluice flow ${entry.flow}` },
      requestor: true,
    },
  ];
  if (entry.recipient !== undefined) {
    agents.push({
      type: { coding: [dcm('110152', 'Destination Role ID')] },
      who: { identifier: { system: `${ns}:recipient`, value: entry.recipient } },
      requestor: false,
      ...(purpose ? { purposeOfUse: purpose } : {}),
    });
  }

  const entities: AuditEventEntity[] = [];
  if (entry.subject !== undefined) {
    entities.push({
      what: { identifier: { system: `${ns}:pseudonym`, value: entry.subject } },
      type: { system: ENTITY_TYPE, code: '1', display: 'Person' },
    });
  }
  if (entry.batchId !== undefined) {
    entities.push({
      what: { identifier: { system: `${ns}:batch`, value: entry.batchId } },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '20', display: 'Job' },
    });
  }
  if (entry.runId !== undefined) {
    entities.push({
      what: { identifier: { system: `${ns}:run`, value: entry.runId } },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '21', display: 'Job Stream' },
    });
  }
  const detail = Object.keys(entry.details)
    .sort()
    .map((key) => ({ type: key, valueString: String(entry.details[key]) }));
  entities.push({
    what: { identifier: { system: `${ns}:audit-leaf`, value: entry.leafHash } },
    type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
    description: `Sluice audit entry ${entry.seq}`,
    ...(detail.length > 0 ? { detail } : {}),
  });

  return {
    resourceType: 'AuditEvent',
    id: `${options.idPrefix ?? 'sluice-audit-'}${entry.seq}`,
    type: codes.type,
    subtype: [...codes.subtype, { system: `${ns}:audit-kind`, code: entry.kind }],
    action: codes.action,
    recorded: entry.at,
    outcome: OUTCOME_CODES[entry.outcome],
    ...(entry.reason !== undefined ? { outcomeDesc: entry.reason } : {}),
    ...(purpose ? { purposeOfEvent: purpose } : {}),
    agent: agents,
    source: {
      ...(options.site !== undefined ? { site: options.site } : {}),
      observer: { display: options.observer ?? 'Sluice' },
      type: [{ system: SOURCE_TYPE, code: '4', display: 'Application Server' }],
    },
    entity: entities,
  };
}

/** NDJSON, one AuditEvent per line, streamed: only the current entry is held. */
export async function* auditEventsNdjson(
  entries: AsyncIterable<StoredAuditEntry>,
  options: FhirExportOptions = {},
): AsyncGenerator<string> {
  for await (const entry of entries) yield `${JSON.stringify(toAuditEvent(entry, options))}\n`;
}
