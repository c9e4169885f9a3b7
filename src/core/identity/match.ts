import type { Hcp } from '../model/canonical.ts';
import type { Person } from '../model/entities.ts';
import { jaroWinkler, normaliseAddressLine, normaliseName, zip5 } from './compare.ts';
import type { DeterministicRule, IdentityConfig, ProbabilisticField } from './config.ts';

/**
 * Pairwise matching: deterministic rules in strict precedence first, then Fellegi–Sunter scoring.
 * Every decision carries its explanation (the rule, or each field's weight), never record values.
 */

/** The normalised view of a person or HCP that matching compares. Built once per record. */
export interface IdentityRecord {
  /** `system:Type/id` of the source record. PHI for patients: keep inside Sluice. */
  readonly key: string;
  readonly kind: 'patient' | 'hcp';
  readonly enterpriseId?: string;
  /** `assigningSystem|value`. */
  readonly mrns: readonly string[];
  /** Current NPI first, then earlier ones the source still lists. */
  readonly npis: readonly string[];
  readonly verifiedEmails: readonly string[];
  readonly emails: readonly string[];
  readonly phones: readonly string[];
  readonly givenName: string;
  readonly familyName: string;
  readonly birthDate?: string;
  readonly gender?: string;
  readonly postalCode?: string;
  readonly addressLine?: string;
  readonly city?: string;
}

export function identityFromPerson(person: Person): IdentityRecord {
  const home = person.addresses.find((a) => a.use === 'home') ?? person.addresses[0];
  return withOptional(
    {
      key: `${person.source.system}:${person.source.resourceType}/${person.source.id}`,
      kind: 'patient',
      mrns: person.mrns.map((m) => `${m.system}|${m.value}`),
      npis: [],
      verifiedEmails: person.emails.filter((e) => e.verified).map((e) => e.value.toLowerCase()),
      emails: person.emails.map((e) => e.value.toLowerCase()),
      phones: [...person.phones],
      givenName: normaliseName(person.givenNames[0]),
      familyName: normaliseName(person.familyName),
    },
    {
      enterpriseId: person.enterpriseId,
      birthDate: person.birthDate,
      gender: person.gender === 'unknown' ? undefined : person.gender,
      postalCode: zip5(home?.postalCode),
      addressLine: home?.lines[0] === undefined ? undefined : normaliseAddressLine(home.lines[0]),
      city: home?.city === undefined ? undefined : normaliseName(home.city),
    },
  );
}

/** An HCP; `previousNpis` are NPIs the source lists as replaced (an HCP may hold two NPIs over time). */
export function identityFromHcp(hcp: Hcp, previousNpis: readonly string[] = []): IdentityRecord {
  const address = hcp.addresses[0];
  return withOptional(
    {
      key: `${hcp.source.system}:${hcp.source.resourceType}/${hcp.source.id}`,
      kind: 'hcp',
      mrns: [],
      npis: [...(hcp.npi === undefined ? [] : [hcp.npi]), ...previousNpis],
      verifiedEmails: [],
      emails: [],
      phones: [],
      givenName: normaliseName(hcp.firstName?.split(' ')[0]),
      familyName: normaliseName(hcp.lastName),
    },
    {
      gender: hcp.gender === 'unknown' ? undefined : hcp.gender,
      postalCode: zip5(address?.postalCode),
      addressLine: address?.lines[0] === undefined ? undefined : normaliseAddressLine(address.lines[0]),
      city: address?.city === undefined ? undefined : normaliseName(address.city),
    },
  );
}

function withOptional(
  base: Omit<IdentityRecord, 'enterpriseId' | 'birthDate' | 'gender' | 'postalCode' | 'addressLine' | 'city'>,
  extra: Record<string, string | undefined>,
): IdentityRecord {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== '') out[k] = v;
  return out as unknown as IdentityRecord;
}

export interface FieldWeight {
  readonly field: ProbabilisticField;
  readonly outcome: 'agree' | 'disagree' | 'missing';
  readonly weight: number;
}

/** Why two records were (or were not) linked. */
export type Explanation =
  | { readonly method: 'deterministic'; readonly rule: DeterministicRule; readonly vetoed: readonly string[] }
  | { readonly method: 'conflict'; readonly rule: DeterministicRule }
  | {
      readonly method: 'probabilistic';
      readonly score: number;
      readonly weights: readonly FieldWeight[];
      readonly namesSwapped: boolean;
      /** Why the pair may at most be reviewed, never auto-linked. */
      readonly vetoes: readonly string[];
      /** Deterministic rules that agreed but were vetoed by a conflicting birth date or name. */
      readonly vetoed: readonly string[];
    };

export type Decision = 'match' | 'review' | 'no-match';

export interface MatchResult {
  readonly decision: Decision;
  readonly explanation: Explanation;
}

const intersects = (a: readonly string[], b: readonly string[]) => a.some((x) => b.includes(x));

function namesCompatible(
  a: IdentityRecord,
  b: IdentityRecord,
  threshold: number,
): { ok: boolean; swapped: boolean } {
  if (a.givenName === '' || b.givenName === '' || a.familyName === '' || b.familyName === '')
    return { ok: true, swapped: false };
  const direct =
    jaroWinkler(a.givenName, b.givenName) >= threshold &&
    jaroWinkler(a.familyName, b.familyName) >= threshold;
  if (direct) return { ok: true, swapped: false };
  const swapped =
    jaroWinkler(a.givenName, b.familyName) >= threshold &&
    jaroWinkler(a.familyName, b.givenName) >= threshold;
  return { ok: swapped, swapped };
}

/** Evaluates one deterministic rule: it matches, conflicts decisively, or does not apply. */
function evaluateRule(
  rule: DeterministicRule,
  a: IdentityRecord,
  b: IdentityRecord,
): 'match' | 'conflict' | 'n/a' {
  switch (rule) {
    case 'enterprise-id':
      if (a.enterpriseId === undefined || b.enterpriseId === undefined) return 'n/a';
      return a.enterpriseId === b.enterpriseId ? 'match' : 'conflict';
    case 'mrn': {
      if (intersects(a.mrns, b.mrns)) return 'match';
      // The same assigning system never gives one person two different MRNs in our data.
      const systems = (r: IdentityRecord) => r.mrns.map((m) => m.slice(0, m.lastIndexOf('|')));
      return intersects(systems(a), systems(b)) ? 'conflict' : 'n/a';
    }
    case 'npi':
      // Disjoint NPIs are not decisive: an HCP may have been issued a new one.
      return intersects(a.npis, b.npis) ? 'match' : 'n/a';
    case 'verified-email':
      return intersects(a.verifiedEmails, b.verifiedEmails) ? 'match' : 'n/a';
    case 'phone':
      return intersects(a.phones, b.phones) ? 'match' : 'n/a';
    case 'name-dob-postal':
      return a.givenName !== '' &&
        a.givenName === b.givenName &&
        a.familyName === b.familyName &&
        a.birthDate !== undefined &&
        a.birthDate === b.birthDate &&
        a.postalCode !== undefined &&
        a.postalCode === b.postalCode
        ? 'match'
        : 'n/a';
  }
}

/** Rules on shared, non-unique contact data (a household phone) need the person to agree too. */
const GUARDED: ReadonlySet<DeterministicRule> = new Set(['verified-email', 'phone']);

export function matchPair(a: IdentityRecord, b: IdentityRecord, config: IdentityConfig): MatchResult {
  if (a.kind !== b.kind)
    return { decision: 'no-match', explanation: { method: 'conflict', rule: 'enterprise-id' } };
  const names = namesCompatible(a, b, config.nameAgreement);
  const birthConflict = a.birthDate !== undefined && b.birthDate !== undefined && a.birthDate !== b.birthDate;
  const vetoed: string[] = [];
  for (const rule of config.precedence) {
    const verdict = evaluateRule(rule, a, b);
    if (verdict === 'conflict') return { decision: 'no-match', explanation: { method: 'conflict', rule } };
    if (verdict !== 'match') continue;
    if (GUARDED.has(rule) && (!names.ok || birthConflict)) {
      vetoed.push(rule);
      continue;
    }
    return { decision: 'match', explanation: { method: 'deterministic', rule, vetoed } };
  }
  return score(a, b, config, names.swapped, vetoed);
}

function weightOf(
  config: IdentityConfig,
  field: ProbabilisticField,
  outcome: FieldWeight['outcome'],
): number {
  const { m, u } = config.weights[field];
  if (outcome === 'missing') return 0;
  return outcome === 'agree' ? Math.log2(m / u) : Math.log2((1 - m) / (1 - u));
}

function score(
  a: IdentityRecord,
  b: IdentityRecord,
  config: IdentityConfig,
  swapped: boolean,
  vetoed: string[],
): MatchResult {
  const t = config.nameAgreement;
  const given = swapped ? [a.givenName, b.familyName] : [a.givenName, b.givenName];
  const family = swapped ? [a.familyName, b.givenName] : [a.familyName, b.familyName];
  const compareName = ([x, y]: string[]) =>
    x === '' || y === '' || x === undefined || y === undefined
      ? 'missing'
      : jaroWinkler(x, y) >= t
        ? 'agree'
        : 'disagree';
  const exact = (x: string | undefined, y: string | undefined) =>
    x === undefined || y === undefined ? 'missing' : x === y ? 'agree' : 'disagree';
  const sets = (x: readonly string[], y: readonly string[]) =>
    x.length === 0 || y.length === 0 ? 'missing' : intersects(x, y) ? 'agree' : 'disagree';
  const outcomes: Record<ProbabilisticField, FieldWeight['outcome']> = {
    givenName: compareName(given),
    familyName: compareName(family),
    birthDate: exact(a.birthDate, b.birthDate),
    gender: exact(a.gender, b.gender),
    postalCode: exact(a.postalCode, b.postalCode),
    addressLine: exact(a.addressLine, b.addressLine),
    city: exact(a.city, b.city),
    phone: sets(a.phones, b.phones),
    email: sets(a.emails, b.emails),
  };
  const weights = (Object.keys(outcomes) as ProbabilisticField[]).map((field) => ({
    field,
    outcome: outcomes[field],
    weight: Math.round(weightOf(config, field, outcomes[field]) * 1000) / 1000,
  }));
  const total = Math.round(weights.reduce((s, w) => s + w.weight, 0) * 1000) / 1000;
  // Twins share a family name, birth date, address and phone: a disagreeing given name or birth date
  // caps the pair at review, whatever the total, so no weight sum can merge two people.
  const vetoes: string[] = [];
  if (outcomes.givenName === 'disagree') vetoes.push('givenName');
  if (outcomes.birthDate === 'disagree') vetoes.push('birthDate');
  if (outcomes.gender === 'disagree') vetoes.push('gender');
  let decision: Decision =
    total >= config.matchThreshold ? 'match' : total >= config.reviewThreshold ? 'review' : 'no-match';
  if (decision === 'match' && vetoes.length > 0) decision = 'review';
  return {
    decision,
    explanation: { method: 'probabilistic', score: total, weights, namesSwapped: swapped, vetoes, vetoed },
  };
}
