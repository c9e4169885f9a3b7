/**
 * Consent evaluation: may this person's data be sent to this recipient, for this purpose, now?
 *
 * Rules, in order (each is a deliberate, fail-closed choice):
 * 1. Only `active` consents of the request's subject whose period covers `at` take part. Revoked, inactive,
 *    draft, expired and not-yet-active consents are listed in `basis.skipped` and never permit.
 * 2. Inside one consent the provision tree is walked from the root. A provision matches when every
 *    criterion it has matches the request (period, actors, action, purpose, class, code, security label,
 *    data). A matching provision's decision is overridden by its matching children (most specific wins);
 *    among matching siblings deny beats permit. If the root does not match, the consent does not apply.
 * 3. A criterion the request cannot answer (e.g. a custodian actor, a data reference or a security label
 *    when the request does not carry one) counts as matching for a deny and as not matching for a permit.
 * 4. A consent without a provision tree is decided by its base policy rule (OPTOUT → deny for every
 *    purpose; OPTIN → permit, but only for `policy.basePermitPurposes`: a bare opt-in to a privacy policy
 *    does not authorise marketing or research).
 * 5. Several applicable consents: the most recently recorded one decides (`recordedAt`, else source
 *    `lastUpdated`, else oldest). On equal times deny beats permit, then the consent ref orders, so the
 *    result never depends on input order.
 * 6. No applicable consent → `policy.defaultDecision`, which defaults to deny (PHI).
 */
import {
  type CodeRef,
  type ConsentActor,
  type ConsentState,
  consentRef,
  type Provision,
  type ProvisionType,
} from './model.ts';
import { isPurposeOfUseSystem, purposeWithin } from './purpose.ts';
import { covers } from './time.ts';

export interface ConsentRequest {
  /** Pseudonym of the person whose data would be sent. */
  readonly subject: string;
  /** PurposeOfUse code (v3 ActReason), e.g. TREAT, HMARKT. */
  readonly purpose: string;
  /** Who receives the data: a `Type/id` reference and a role (e.g. a participation or business role). */
  readonly recipient: { readonly id: string; readonly role: string };
  readonly resourceType: string;
  readonly codes?: readonly CodeRef[];
  readonly securityLabels?: readonly CodeRef[];
  readonly at: Date;
  /** `Type/id` of the record being sent, when a rule names specific records. */
  readonly resourceRef?: string;
  /** `Type/id` of the custodian / author of the data, for rules that name them (CST, AUT actors). */
  readonly dataActors?: readonly string[];
}

export type DecisionValue = 'permit' | 'deny' | 'not-applicable';

export interface EvaluationPolicy {
  /** Version of the evaluation policy (flow config), stamped on every decision. */
  readonly version: string;
  /** Decision when no consent applies. Defaults to deny: PHI does not move without consent. */
  readonly defaultDecision?: DecisionValue;
  /** Purposes a bare opt-in policy rule may permit (with their specialisations). */
  readonly basePermitPurposes?: readonly string[];
}

/** HIPAA treatment, payment and operations: what a bare opt-in covers unless the flow says otherwise. */
export const DEFAULT_BASE_PERMIT_PURPOSES: readonly string[] = ['TREAT', 'HPAYMT', 'HOPERAT'];

export type SkipReason =
  | 'other-subject'
  | 'revoked'
  | 'inactive'
  | 'not-active-status'
  | 'expired'
  | 'not-yet-active'
  | 'not-applicable';

export interface DecisionBasis {
  /** `provision` (a rule of a consent), `base-policy` (its policy rule) or `default` (no consent applied). */
  readonly rule: 'provision' | 'base-policy' | 'default';
  /** The deciding consent; absent when the default applied. */
  readonly consentRef?: string;
  /** E.g. `provision.provision[1]`, or `policyRule`. */
  readonly provisionPath?: string;
  /** Scope code of the deciding consent (a batch-key part). */
  readonly consentScope?: string;
  /** Policy / consent-text version the deciding consent was given under. */
  readonly consentPolicyVersion?: string;
  /** Human-readable, PHI-free. */
  readonly reason: string;
  /** Number of consents of the subject that were looked at. */
  readonly considered: number;
  /** Consents that did not take part, and why. */
  readonly skipped: readonly { readonly consentRef: string; readonly why: SkipReason }[];
}

export interface ConsentDecision {
  readonly decision: DecisionValue;
  readonly basis: DecisionBasis;
  readonly policyVersion: string;
}

interface Found {
  readonly type: ProvisionType;
  readonly path: string;
  readonly notes: readonly string[];
}

type Tri = 'yes' | 'no' | 'unknown';

const DATA_SIDE_ROLES: ReadonlySet<string> = new Set(['CST', 'AUT', 'INF', 'ENT']);
/** Sending data to a recipient is a disclosure the recipient then accesses and uses. */
const DISCLOSURE_ACTIONS: ReadonlySet<string> = new Set(['disclose', 'access', 'use']);
const CONFIDENTIALITY_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
const CONFIDENTIALITY_RANK: Readonly<Record<string, number>> = { U: 0, L: 1, M: 2, N: 3, R: 4, V: 5 };
const RESOURCE_TYPES_SYSTEM = 'http://hl7.org/fhir/resource-types';

export function evaluateConsent(
  states: readonly ConsentState[],
  request: ConsentRequest,
  policy: EvaluationPolicy,
): ConsentDecision {
  const at = request.at.getTime();
  if (Number.isNaN(at)) {
    // Fail closed even when the flow default is permit: no period can be checked against an invalid time.
    return {
      decision: 'deny',
      basis: { rule: 'default', reason: 'request time is invalid', considered: states.length, skipped: [] },
      policyVersion: policy.version,
    };
  }
  const skipped: { consentRef: string; why: SkipReason }[] = [];
  let best:
    | { state: ConsentState; found: Found; rule: 'provision' | 'base-policy'; time: number }
    | undefined;

  for (const state of states) {
    const ref = consentRef(state.source);
    const why = skipReason(state, request.subject, at);
    if (why !== undefined) {
      skipped.push({ consentRef: ref, why });
      continue;
    }
    let found: Found | undefined;
    let rule: 'provision' | 'base-policy' = 'provision';
    if (state.provision === undefined) {
      rule = 'base-policy';
      found = baseDecision(state, request.purpose, policy);
    } else {
      found = resolve(state.provision, 'provision', request, at);
    }
    if (found === undefined) {
      skipped.push({ consentRef: ref, why: 'not-applicable' });
      continue;
    }
    const time = state.recordedAt ?? state.source.lastUpdated ?? Number.NEGATIVE_INFINITY;
    if (best === undefined || wins(time, found.type, ref, best.time, best.found.type, best.state)) {
      best = { state, found, rule, time };
    }
  }

  if (best === undefined) {
    const decision = policy.defaultDecision ?? 'deny';
    return {
      decision,
      basis: {
        rule: 'default',
        reason: `no applicable consent; flow default ${decision}`,
        considered: states.length,
        skipped,
      },
      policyVersion: policy.version,
    };
  }
  const notes = best.found.notes.length > 0 ? ` (${best.found.notes.join('; ')})` : '';
  return {
    decision: best.found.type,
    basis: {
      rule: best.rule,
      consentRef: consentRef(best.state.source),
      provisionPath: best.found.path,
      consentScope: best.state.scope.code,
      consentPolicyVersion: best.state.policyVersion,
      reason: `${best.found.type} by ${best.found.path}${notes}`,
      considered: states.length,
      skipped,
    },
    policyVersion: policy.version,
  };
}

function skipReason(state: ConsentState, subject: string, at: number): SkipReason | undefined {
  if (state.subject !== subject) return 'other-subject';
  if (state.status === 'revoked') return 'revoked';
  if (state.status === 'inactive') return 'inactive';
  if (state.status !== 'active') return 'not-active-status';
  if (state.period.start !== undefined && at < state.period.start) return 'not-yet-active';
  if (state.period.end !== undefined && at >= state.period.end) return 'expired';
  return undefined;
}

/** True when candidate (time, type, ref) beats the current best (rule 5). */
function wins(
  time: number,
  type: ProvisionType,
  ref: string,
  bestTime: number,
  bestType: ProvisionType,
  best: ConsentState,
): boolean {
  if (time !== bestTime) return time > bestTime;
  if (type !== bestType) return type === 'deny';
  return ref < consentRef(best.source);
}

function baseDecision(state: ConsentState, purpose: string, policy: EvaluationPolicy): Found | undefined {
  if (state.baseDecision === undefined) return undefined;
  const rule = state.policyRule?.code ?? 'base';
  if (state.baseDecision === 'deny') return { type: 'deny', path: 'policyRule', notes: [`base ${rule}`] };
  const allowed = policy.basePermitPurposes ?? DEFAULT_BASE_PERMIT_PURPOSES;
  if (!allowed.some((p) => purposeWithin(purpose, p))) return undefined;
  return { type: 'permit', path: 'policyRule', notes: [`base ${rule} for purpose ${purpose}`] };
}

/** The resolved decision of a provision subtree, or undefined when the provision does not match. */
function resolve(provision: Provision, path: string, request: ConsentRequest, at: number): Found | undefined {
  const m = match(provision, request, at);
  if (m === 'no' || (m === 'unknown' && provision.type === 'permit')) return undefined;
  let permitChild: Found | undefined;
  for (let i = 0; i < provision.provisions.length; i++) {
    const child = provision.provisions[i] as Provision;
    const found = resolve(child, `${path}.provision[${i}]`, request, at);
    if (found === undefined) continue;
    // Deny beats permit among siblings; the first matching deny decides.
    if (found.type === 'deny') return found;
    permitChild ??= found;
  }
  if (permitChild !== undefined) return permitChild;
  const notes: string[] = [];
  if (provision.typeInferred) notes.push(`untyped provision read as ${provision.type}`);
  if (m === 'unknown') notes.push('request lacks data a criterion needs; deny applied');
  return { type: provision.type, path, notes };
}

function match(p: Provision, request: ConsentRequest, at: number): Tri {
  let result: Tri = 'yes';
  const add = (t: Tri): boolean => {
    if (t === 'no') return false;
    if (t === 'unknown') result = 'unknown';
    return true;
  };
  if (p.period !== undefined && !covers(p.period, at)) return 'no';
  if (!add(matchActors(p.actors, request))) return 'no';
  if (p.actions.length > 0 && !p.actions.some((a) => DISCLOSURE_ACTIONS.has(a))) return 'no';
  if (!add(matchPurposes(p.purposes, request.purpose))) return 'no';
  if (!add(matchClasses(p.classes, request.resourceType))) return 'no';
  if (!add(matchCodes(p.codes, request.codes))) return 'no';
  if (!add(matchLabels(p.securityLabels, request.securityLabels))) return 'no';
  if (!add(matchData(p, request.resourceRef))) return 'no';
  // The request carries no date of the data, so a data period can never be checked.
  if (p.dataPeriod !== undefined) result = 'unknown';
  return result;
}

function matchActors(actors: readonly ConsentActor[], request: ConsentRequest): Tri {
  if (actors.length === 0) return 'yes';
  const recipientSide = actors.filter((a) => !a.roles.some((r) => DATA_SIDE_ROLES.has(r)));
  const dataSide = actors.filter((a) => a.roles.some((r) => DATA_SIDE_ROLES.has(r)));
  let result: Tri = 'yes';
  if (recipientSide.length > 0) {
    const hit = recipientSide.some((a) =>
      a.reference === undefined
        ? a.roles.includes(request.recipient.role)
        : a.reference === request.recipient.id,
    );
    if (!hit) return 'no';
  }
  if (dataSide.length > 0) {
    if (request.dataActors === undefined) result = 'unknown';
    else if (!dataSide.some((a) => a.reference !== undefined && request.dataActors?.includes(a.reference))) {
      return 'no';
    }
  }
  return result;
}

function matchPurposes(purposes: readonly CodeRef[], requested: string): Tri {
  if (purposes.length === 0) return 'yes';
  let unknown = false;
  for (const p of purposes) {
    if (!isPurposeOfUseSystem(p.system)) unknown = true;
    else if (purposeWithin(requested, p.code)) return 'yes';
  }
  return unknown ? 'unknown' : 'no';
}

function matchClasses(classes: readonly CodeRef[], resourceType: string): Tri {
  if (classes.length === 0) return 'yes';
  let unknown = false;
  for (const c of classes) {
    if (c.system === undefined || c.system === RESOURCE_TYPES_SYSTEM) {
      if (c.code === resourceType) return 'yes';
    } else {
      // MIME types, profiles, document types: not decidable from a resource type alone.
      unknown = true;
    }
  }
  return unknown ? 'unknown' : 'no';
}

function sameCode(a: CodeRef, b: CodeRef): boolean {
  return a.code === b.code && (a.system === undefined || b.system === undefined || a.system === b.system);
}

function matchCodes(codes: readonly CodeRef[], requested: readonly CodeRef[] | undefined): Tri {
  if (codes.length === 0) return 'yes';
  if (requested === undefined) return 'unknown';
  return codes.some((c) => requested.some((r) => sameCode(c, r))) ? 'yes' : 'no';
}

/** Confidentiality labels are a high-water mark: a rule about R covers data labelled R or lower. */
function matchLabels(labels: readonly CodeRef[], requested: readonly CodeRef[] | undefined): Tri {
  if (labels.length === 0) return 'yes';
  if (requested === undefined) return 'unknown';
  for (const label of labels) {
    const ruleRank = label.system === CONFIDENTIALITY_SYSTEM ? CONFIDENTIALITY_RANK[label.code] : undefined;
    for (const r of requested) {
      if (ruleRank !== undefined && r.system === CONFIDENTIALITY_SYSTEM) {
        const rank = CONFIDENTIALITY_RANK[r.code];
        if (rank !== undefined && rank <= ruleRank) return 'yes';
      } else if (sameCode(label, r)) {
        return 'yes';
      }
    }
  }
  return 'no';
}

function matchData(p: Provision, resourceRef: string | undefined): Tri {
  if (p.data.length === 0) return 'yes';
  if (resourceRef === undefined) return 'unknown';
  if (p.data.some((d) => d.reference === resourceRef)) return 'yes';
  // related / dependents / authoredby need the record graph, which the request does not carry.
  return p.data.some((d) => d.meaning !== 'instance') ? 'unknown' : 'no';
}
