import { type PseudonymKey, pseudonymize } from '../../core/anonymize/pseudonym.ts';
import type { ConsentDecision } from '../../core/consent/index.ts';
import type { ErrorCode } from '../../core/errors/index.ts';
import { isJsonObject, type JsonObject, str } from '../../core/fhir/resource.ts';
import type { TargetWrite, VeevaMappingConfig } from '../../core/mapping/canonical-to-veeva.ts';
import { isMappedResourceType } from '../../core/mapping/fhir-to-canonical.ts';
import type { Issue } from '../../core/mapping/outcome.ts';
import { createMatrixEngine, isLegacyKind, type MatrixEngine } from '../../core/matrix/engine.ts';
import type { SystemName } from '../../core/model/ids.ts';
import { validateCanonical } from '../../core/model/schemas.ts';
import { type Allowlist, applyAllowlist } from '../../core/policy/allowlist.ts';
import type { WithholdPolicy } from '../../core/policy/withhold.ts';
import type { SourceRecord } from '../../core/ports/source.ts';
import { hasErrors, prepareValidators, validateFast } from '../../core/validate/compiled/validate.ts';
import type { QuarantineStage } from '../store/state-store.ts';

let engine: MatrixEngine | undefined;

/**
 * The mapping matrix (config/mappings/*.yaml), compiled once per process: every FHIRPath rule and
 * concept map is prepared before the first record.
 */
export function mappingEngine(): MatrixEngine {
  engine ??= createMatrixEngine();
  return engine;
}

/** Does now what the record stages would do at their first record of these types (compile validators). */
export function prepareRecordStages(
  ctx: Pick<RecordStageContext, 'validateFhir'>,
  types: readonly string[],
): void {
  mappingEngine();
  if (ctx.validateFhir) prepareValidators(types);
}

/** Everything the per-record stages need, fixed for a run. */
export interface RecordStageContext {
  readonly system: SystemName;
  readonly validateFhir: boolean;
  /**
   * Provenance policy: records whose `meta.security` carries one of these labels (a sensitive origin,
   * e.g. 42 CFR Part 2 substance-use data `42CFRPart2`, `PSY`, `ETH`, `HIV`, or `R` restricted) are
   * refused (withheld, audited).
   */
  readonly refuseSecurityLabels?: ReadonlySet<string>;
  /**
   * Provenance policy on consent: permits resting only on these bases (`base-policy`: a bare opt-in
   * policy rule without provisions; `default`: no consent at all, permitted by the flow's default) are
   * treated as partial consent and refused.
   */
  readonly refuseConsentBasis?: ReadonlySet<string>;
  /**
   * A record refused for its security labels also has what earlier runs delivered for it removed at
   * the target (true), or left there as last sent (false). Absent: true.
   */
  readonly retractSensitive?: boolean;
  /** The recipient allowlist: objects and fields this recipient may receive for this purpose. */
  readonly allowlist?: Allowlist;
  /** The source's ids may exceed FHIR's 64 characters (Epic): that one check becomes a warning. */
  readonly allowLongIds?: boolean;
  readonly withhold: WithholdPolicy;
  readonly pseudonymKey: PseudonymKey;
  readonly restrictedZip3: ReadonlySet<string>;
  readonly veeva: VeevaMappingConfig;
  /** The run's start: ages are generalised as of this instant. */
  readonly asOf: Date;
  /** The ingest-time consent check for patient data (absent: the flow has no consent stage). */
  readonly consent?: (subject: string, resourceType: string) => ConsentDecision;
}

/** What the record stages decided for one source record. */
export type RecordVerdict =
  | {
      readonly kind: 'quarantine';
      readonly stage: QuarantineStage;
      readonly code: ErrorCode;
      readonly issues: readonly Issue[];
      readonly sourceRef?: string;
      readonly lastUpdated?: string;
    }
  | {
      readonly kind: 'withheld';
      readonly reason: string;
      readonly lastUpdated?: string;
      /** The consent decision, when consent withheld it. */
      readonly decision?: ConsentDecision;
      /** The person's pseudonym, when the record is patient data. */
      readonly subject?: string;
      /**
       * Set when what earlier runs delivered for this record is to be removed at the target: its
       * ledger ref (`Type/id`, or the pseudonym for patient data).
       */
      readonly retractRef?: string;
    }
  | {
      readonly kind: 'ready';
      readonly writes: readonly TargetWrite[];
      /** `Type/id`, or the pseudonym for patient data (never a clear patient id). */
      readonly ledgerRef: string;
      readonly sourceRef: string;
      readonly lastUpdated?: string;
      /** The person's pseudonym, for data that needs consent at send time. */
      readonly subject?: string;
      /** Coarse geography for batch grouping (US ZIP3 national area), when known. */
      readonly region?: string;
      /** `Object.Field` values the allowlist dropped from this record. */
      readonly dropped?: readonly string[];
    };

/**
 * The record-level pipeline, in order: shape → schema validation → withhold policy → FHIR → canonical
 * → target writes. Every "no" is a verdict with a catalog code and its issues; nothing throws for bad
 * input.
 */
export function processRecord(record: SourceRecord, ctx: RecordStageContext): RecordVerdict {
  const resource = record.resource;
  if (!isJsonObject(resource) || typeof resource.resourceType !== 'string') {
    return quarantine('parse', 'REC_UNPARSEABLE', [
      issueOf('REC_UNPARSEABLE', '', 'the record is not a JSON object with a resourceType'),
    ]);
  }
  const type = resource.resourceType;
  const id = str(resource.id);
  const sourceRef = id === undefined ? undefined : `${type}/${id}`;
  const lastUpdated = metaLastUpdated(resource);
  const where = {
    ...(sourceRef === undefined ? {} : { sourceRef }),
    ...(lastUpdated ? { lastUpdated } : {}),
  };

  if (!isMappedResourceType(type) || type !== record.stream) {
    return {
      ...quarantine('map', 'REC_UNSUPPORTED_TYPE', [
        issueOf(
          'REC_UNSUPPORTED_TYPE',
          'resourceType',
          `resource type ${type} in stream ${record.stream} has no mapping in this flow`,
        ),
      ]),
      ...where,
    };
  }
  if (id === undefined) {
    return {
      ...quarantine('parse', 'MAP_REQUIRED_MISSING', [
        issueOf('MAP_REQUIRED_MISSING', 'id', 'the resource has no id; it cannot be tracked or updated'),
      ]),
      ...where,
    };
  }
  if (ctx.validateFhir) {
    const issues = validateFast(resource, { allowLongIds: ctx.allowLongIds === true });
    if (hasErrors(issues)) return { ...quarantine('validate', 'REC_INVALID_FHIR', issues), ...where };
  }
  if (ctx.refuseSecurityLabels?.size && isJsonObject(resource.meta)) {
    const labels = Array.isArray(resource.meta.security) ? resource.meta.security : [];
    const sensitive = labels.some(
      (l) => isJsonObject(l) && typeof l.code === 'string' && ctx.refuseSecurityLabels?.has(l.code),
    );
    if (sensitive)
      return {
        kind: 'withheld',
        reason: 'provenance-sensitive-origin',
        ...(lastUpdated ? { lastUpdated } : {}),
        ...(ctx.retractSensitive === false ? {} : { retractRef: ledgerRefOf(ctx, type, id) }),
      };
  }
  const withheld = ctx.withhold.decide(type, resource);
  if (withheld)
    return {
      kind: 'withheld',
      reason: withheld.rule.reason,
      ...(lastUpdated ? { lastUpdated } : {}),
      ...(withheld.rule.delivered === 'delete' ? { retractRef: ledgerRefOf(ctx, type, id) } : {}),
    };

  const ctxFor = { system: ctx.system, verifiedAt: new Date().toISOString(), asOf: ctx.asOf };
  const engine = mappingEngine();
  const mapped = engine.fhirToCanonical(resource as JsonObject, {
    ...ctxFor,
    pseudonymKey: ctx.pseudonymKey,
    restrictedZip3: ctx.restrictedZip3,
  });
  if (!mapped.ok) return { ...quarantine('map', mapped.code, mapped.issues), ...where };
  if (!isLegacyKind(mapped.value)) {
    return {
      ...quarantine('map', 'REC_UNSUPPORTED_TYPE', [
        issueOf(
          'REC_UNSUPPORTED_TYPE',
          'resourceType',
          `resource type ${type} maps to no record this target takes`,
        ),
      ]),
      ...where,
    };
  }
  const canonical = mapped.value;
  // The canonical record against its own schema: a mapping bug never reaches a target.
  const checked = validateCanonical(canonical);
  if (!checked.ok) return { ...quarantine('map', checked.code, checked.issues), ...where };
  const subject = canonical.kind === 'PatientProfile' ? canonical.pseudonym : undefined;
  if (subject !== undefined && ctx.consent) {
    const decision = ctx.consent(subject, type);
    if (decision.decision === 'permit' && ctx.refuseConsentBasis?.has(decision.basis.rule)) {
      return {
        kind: 'withheld',
        reason: 'provenance-partial-consent',
        decision,
        subject,
        ...(lastUpdated ? { lastUpdated } : {}),
      };
    }
    if (decision.decision !== 'permit') {
      return {
        kind: 'withheld',
        reason: `consent-${decision.decision}`,
        decision,
        subject,
        ...(lastUpdated ? { lastUpdated } : {}),
      };
    }
  }
  const ledgerRef = subject ?? (sourceRef as string);
  const written = engine.canonicalToVeeva(canonical, {
    ...ctxFor,
    system: 'veeva' as SystemName,
    config: ctx.veeva as unknown as Record<string, unknown>,
  });
  if (!written.ok) return { ...quarantine('map', written.code, written.issues), ...where };
  let writes: readonly TargetWrite[] = written.value.writes;
  let dropped: readonly string[] = [];
  if (ctx.allowlist) {
    const policy = applyAllowlist(ctx.allowlist, writes);
    const first = policy.issues[0];
    if (first) return { ...quarantine('policy', first.code as ErrorCode, policy.issues), ...where };
    writes = policy.writes;
    dropped = policy.dropped;
  }
  return {
    kind: 'ready',
    writes,
    ...(dropped.length > 0 ? { dropped } : {}),
    ledgerRef,
    sourceRef: sourceRef as string,
    ...(lastUpdated ? { lastUpdated } : {}),
    ...(subject === undefined ? {} : { subject }),
    ...(canonical.kind === 'PatientProfile' && canonical.zip3 !== undefined && canonical.zip3 !== '000'
      ? { region: `US-zip${canonical.zip3[0]}` }
      : {}),
  };
}

/** Where the delivery ledger keeps a source record: patient data by pseudonym, the rest by `Type/id`. */
export function ledgerRefOf(
  ctx: Pick<RecordStageContext, 'pseudonymKey' | 'system'>,
  type: string,
  id: string,
): string {
  return type === 'Patient' ? pseudonymize(ctx.pseudonymKey, ctx.system, 'Patient', id) : `${type}/${id}`;
}

function metaLastUpdated(resource: JsonObject): string | undefined {
  return isJsonObject(resource.meta) ? str(resource.meta.lastUpdated) : undefined;
}

function quarantine(stage: QuarantineStage, code: ErrorCode, issues: readonly Issue[]): RecordVerdict {
  return { kind: 'quarantine', stage, code, issues };
}

function issueOf(code: ErrorCode, path: string, message: string): Issue {
  return { severity: 'error', code, path, message };
}
