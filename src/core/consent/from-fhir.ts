/**
 * FHIR R4 Consent → ConsentState. Never throws: a consent that cannot be read safely fails with specific
 * issue codes (the record is quarantined), and interpretations the importer had to make are warnings.
 *
 * Interpretation rules (R4 leaves them open, and the official examples use them inconsistently):
 * - A root provision without `type` is read as **deny**. The examples encode both "authorise" (basic) and
 *   "withhold" (notTime, notThem, …) with the same untyped shape, so no reading is right for all of them;
 *   deny is the one that never discloses by mistake. Explicit types are always honoured.
 * - A nested provision without `type` inherits its parent's type. Nested rules only apply inside their
 *   parent, so this adds nothing the parent did not already decide (a no-op, never a widening).
 * - `policyRule` OPTIN/OPTINR → base permit, OPTOUT/OPTOUTE → base deny (see POLICY_RULE_BASE). The base
 *   decides only for a consent without a provision tree (see evaluate.ts).
 * - A `modifierExtension` anywhere Sluice reads fails the consent: by definition it may change the meaning.
 */
import type { PseudonymKey } from '../anonymize/pseudonym.ts';
import { pseudonymize } from '../anonymize/pseudonym.ts';
import type { ErrorCode } from '../errors/index.ts';
import { isJsonObject, parseReference, str } from '../fhir/resource.ts';
import { fail, type Issue, issue, type Outcome, ok, warning } from '../mapping/outcome.ts';
import type {
  CodeRef,
  ConsentActor,
  ConsentState,
  ConsentStatus,
  DataRef,
  Period,
  Provision,
  ProvisionType,
} from './model.ts';
import { parseFhirTime } from './time.ts';

export interface FhirConsentOptions {
  /** The flow's name for the source system (e.g. `epic`); part of the pseudonym input and of consent refs. */
  readonly system: string;
  /** The key that turns `Consent.patient` into the subject pseudonym (same key as for the patient data). */
  readonly pseudonymKey: PseudonymKey;
  /** Overrides the derived policy version (first `policy.uri`, else the policy rule code). */
  readonly policyVersion?: string;
}

const V3_ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';

/** Base decision of a v3 ActCode consent policy rule. */
export const POLICY_RULE_BASE: Readonly<Record<string, ProvisionType>> = {
  OPTIN: 'permit',
  OPTINR: 'permit',
  OPTOUT: 'deny',
  OPTOUTE: 'deny',
};

const R4_STATUSES: readonly ConsentStatus[] = [
  'draft',
  'proposed',
  'active',
  'rejected',
  'inactive',
  'entered-in-error',
];

/** Bounds on hostile input: deeper or larger provision trees are refused rather than walked. */
export const MAX_PROVISION_DEPTH = 16;
export const MAX_PROVISIONS = 1000;

interface Ctx {
  readonly errors: Issue[];
  readonly warnings: Issue[];
  count: number;
}

export function consentFromFhir(input: unknown, options: FhirConsentOptions): Outcome<ConsentState> {
  const ctx: Ctx = { errors: [], warnings: [], count: 0 };
  if (!isJsonObject(input) || input.resourceType !== 'Consent') {
    return fail('CONSENT_MALFORMED', [issue('CONSENT_MALFORMED', '', 'not a FHIR Consent resource')]);
  }
  const id = str(input.id);
  if (id === undefined) ctx.errors.push(issue('CONSENT_MALFORMED', 'id', 'consent has no id to cite'));
  rejectModifiers(input, '', ctx);

  const status = parseStatus(input.status, ctx);

  let subject: string | undefined;
  const patient = isJsonObject(input.patient) ? parseReference(input.patient.reference) : undefined;
  if (patient === undefined || patient.resourceType !== 'Patient') {
    ctx.errors.push(issue('CONSENT_SUBJECT_MISSING', 'patient', 'no literal Patient reference'));
  } else {
    subject = pseudonymize(options.pseudonymKey, options.system, 'Patient', patient.id);
  }

  const scope = firstCoding(input.scope);
  if (scope === undefined) ctx.errors.push(issue('CONSENT_MALFORMED', 'scope', 'scope has no coding'));
  const categories = list(input.category, 'category', ctx).flatMap(codings);
  if (categories.length === 0)
    ctx.warnings.push(warning('CONSENT_NO_CATEGORY', 'category', 'no category coding'));

  const recordedAt = optionalTime(input.dateTime, 'dateTime', ctx);
  const meta = isJsonObject(input.meta) ? input.meta : undefined;
  const lastUpdated = optionalTime(meta?.lastUpdated, 'meta.lastUpdated', ctx);
  const version = str(meta?.versionId);

  const policyRule = firstCoding(input.policyRule);
  const baseDecision =
    policyRule !== undefined && (policyRule.system === undefined || policyRule.system === V3_ACT_CODE)
      ? POLICY_RULE_BASE[policyRule.code]
      : undefined;
  const policyUri = list(input.policy, 'policy', ctx)
    .map((p) => (isJsonObject(p) ? str(p.uri) : undefined))
    .find((u) => u !== undefined);

  let provision: Provision | undefined;
  if (input.provision !== undefined) {
    provision = parseProvision(input.provision, 'provision', 0, undefined, ctx);
  } else if (baseDecision === undefined) {
    ctx.warnings.push(
      warning('CONSENT_NO_RULES', 'provision', 'no provision and no known policy rule: never decides'),
    );
  }

  if (ctx.errors.length > 0 || status === undefined || subject === undefined || scope === undefined) {
    const errors =
      ctx.errors.length > 0 ? ctx.errors : [issue('CONSENT_MALFORMED', '', 'incomplete consent')];
    return fail(errors[0]?.code as ErrorCode, errors);
  }
  const state: ConsentState = {
    subject,
    status,
    scope,
    categories,
    period: provision?.period ?? {},
    source: {
      system: options.system,
      resourceType: 'Consent',
      id: id as string,
      ...(version === undefined ? {} : { version }),
      ...(lastUpdated === undefined ? {} : { lastUpdated }),
    },
    policyVersion:
      options.policyVersion ??
      policyUri ??
      (policyRule === undefined ? 'unversioned' : `policyRule:${policyRule.code}`),
    ...(recordedAt === undefined ? {} : { recordedAt }),
    ...(policyRule === undefined ? {} : { policyRule }),
    ...(baseDecision === undefined ? {} : { baseDecision }),
    ...(provision === undefined ? {} : { provision }),
  };
  return ok(state, ctx.warnings);
}

function parseStatus(value: unknown, ctx: Ctx): ConsentStatus | undefined {
  if (value === undefined || value === null || value === '') {
    ctx.errors.push(issue('CONSENT_STATUS_INVALID', 'status', 'status is missing'));
    return undefined;
  }
  const found = R4_STATUSES.find((s) => s === value);
  if (found === undefined) {
    ctx.errors.push(issue('CONSENT_STATUS_INVALID', 'status', 'status is not an R4 Consent status code'));
  }
  return found;
}

function parseProvision(
  raw: unknown,
  path: string,
  depth: number,
  parentType: ProvisionType | undefined,
  ctx: Ctx,
): Provision | undefined {
  ctx.count += 1;
  if (depth >= MAX_PROVISION_DEPTH || ctx.count > MAX_PROVISIONS) {
    ctx.errors.push(issue('CONSENT_MALFORMED', path, 'provision tree is too deep or too large'));
    return undefined;
  }
  if (!isJsonObject(raw)) {
    ctx.errors.push(issue('CONSENT_MALFORMED', path, 'provision is not an object'));
    return undefined;
  }
  rejectModifiers(raw, path, ctx);

  let type: ProvisionType;
  let typeInferred = false;
  if (raw.type === 'permit' || raw.type === 'deny') {
    type = raw.type;
  } else if (raw.type === undefined) {
    typeInferred = true;
    type = parentType ?? 'deny';
    ctx.warnings.push(
      parentType === undefined
        ? warning('CONSENT_ROOT_TYPE_INFERRED', `${path}.type`, 'root provision has no type; read as deny')
        : warning('CONSENT_PROVISION_TYPE_INHERITED', `${path}.type`, `no type; inherits ${parentType}`),
    );
  } else {
    ctx.errors.push(
      issue('CONSENT_PROVISION_TYPE_UNKNOWN', `${path}.type`, 'type is neither permit nor deny'),
    );
    type = 'deny';
  }

  const period = optionalPeriod(raw.period, `${path}.period`, ctx);
  const dataPeriod = optionalPeriod(raw.dataPeriod, `${path}.dataPeriod`, ctx);

  const actors: ConsentActor[] = [];
  list(raw.actor, `${path}.actor`, ctx).forEach((a, i) => {
    const at = `${path}.actor[${i}]`;
    const roles = isJsonObject(a) ? codings(a.role).map((c) => c.code) : [];
    const ref = isJsonObject(a) && isJsonObject(a.reference) ? str(a.reference.reference) : undefined;
    if (roles.length === 0)
      ctx.errors.push(issue('CONSENT_MALFORMED', `${at}.role`, 'actor has no role code'));
    if (ref === undefined) {
      ctx.errors.push(issue('CONSENT_MALFORMED', `${at}.reference`, 'actor has no literal reference'));
    } else {
      actors.push({ roles, reference: normalizeReference(ref) });
    }
  });

  const data: DataRef[] = [];
  list(raw.data, `${path}.data`, ctx).forEach((d, i) => {
    const meaning = isJsonObject(d) ? str(d.meaning) : undefined;
    const ref = isJsonObject(d) && isJsonObject(d.reference) ? str(d.reference.reference) : undefined;
    if (meaning === undefined || ref === undefined) {
      ctx.errors.push(issue('CONSENT_MALFORMED', `${path}.data[${i}]`, 'data needs meaning and reference'));
    } else {
      data.push({ meaning, reference: normalizeReference(ref) });
    }
  });

  const provisions: Provision[] = [];
  list(raw.provision, `${path}.provision`, ctx).forEach((child, i) => {
    const parsed = parseProvision(child, `${path}.provision[${i}]`, depth + 1, type, ctx);
    if (parsed !== undefined) provisions.push(parsed);
  });

  return {
    type,
    ...(typeInferred ? { typeInferred } : {}),
    ...(period === undefined ? {} : { period }),
    ...(dataPeriod === undefined ? {} : { dataPeriod }),
    actors,
    actions: list(raw.action, `${path}.action`, ctx)
      .flatMap(codings)
      .map((c) => c.code),
    purposes: list(raw.purpose, `${path}.purpose`, ctx).flatMap(coding),
    classes: list(raw.class, `${path}.class`, ctx).flatMap(coding),
    codes: list(raw.code, `${path}.code`, ctx).flatMap(codings),
    securityLabels: list(raw.securityLabel, `${path}.securityLabel`, ctx).flatMap(coding),
    data,
    provisions,
  };
}

function rejectModifiers(obj: Record<string, unknown>, path: string, ctx: Ctx): void {
  if (Array.isArray(obj.modifierExtension) && obj.modifierExtension.length > 0) {
    const at = path === '' ? 'modifierExtension' : `${path}.modifierExtension`;
    ctx.errors.push(issue('CONSENT_MALFORMED', at, 'modifier extension Sluice cannot interpret'));
  }
}

function list(value: unknown, path: string, ctx: Ctx): unknown[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value;
  ctx.errors.push(issue('CONSENT_MALFORMED', path, 'expected a JSON array'));
  return [];
}

/** A Coding as a CodeRef, or nothing when it has no code. */
function coding(value: unknown): CodeRef[] {
  if (!isJsonObject(value)) return [];
  const code = str(value.code);
  if (code === undefined) return [];
  const system = str(value.system);
  return [system === undefined ? { code } : { system, code }];
}

/** The codings of a CodeableConcept. */
function codings(value: unknown): CodeRef[] {
  if (!isJsonObject(value) || !Array.isArray(value.coding)) return [];
  return value.coding.flatMap(coding);
}

function firstCoding(value: unknown): CodeRef | undefined {
  return codings(value)[0];
}

function optionalTime(value: unknown, path: string, ctx: Ctx): number | undefined {
  if (value === undefined) return undefined;
  const range = parseFhirTime(value);
  if (range === undefined) ctx.errors.push(issue('CONSENT_PERIOD_INVALID', path, 'not a FHIR dateTime'));
  return range?.start;
}

function optionalPeriod(value: unknown, path: string, ctx: Ctx): Period | undefined {
  if (value === undefined) return undefined;
  if (!isJsonObject(value)) {
    ctx.errors.push(issue('CONSENT_PERIOD_INVALID', path, 'period is not an object'));
    return undefined;
  }
  const start = value.start === undefined ? undefined : parseFhirTime(value.start);
  const end = value.end === undefined ? undefined : parseFhirTime(value.end);
  if (value.start !== undefined && start === undefined) {
    ctx.errors.push(issue('CONSENT_PERIOD_INVALID', `${path}.start`, 'not a FHIR dateTime'));
  }
  if (value.end !== undefined && end === undefined) {
    ctx.errors.push(issue('CONSENT_PERIOD_INVALID', `${path}.end`, 'not a FHIR dateTime'));
  }
  if (start !== undefined && end !== undefined && end.end <= start.start) {
    ctx.errors.push(issue('CONSENT_PERIOD_INVALID', path, 'period ends before it starts'));
  }
  return {
    ...(start === undefined ? {} : { start: start.start }),
    ...(end === undefined ? {} : { end: end.end }),
  };
}

/** `Type/id` for relative or absolute literal references; other forms (urn:uuid, #contained) as given. */
export function normalizeReference(reference: string): string {
  const parsed = parseReference(reference.trim());
  return parsed === undefined ? reference.trim() : `${parsed.resourceType}/${parsed.id}`;
}
