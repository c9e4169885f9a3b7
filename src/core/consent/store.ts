/**
 * In-memory consent index keyed by subject pseudonym, so the send-time check costs O(consents of that
 * person) whatever the population. Writes are ordered by the source's own clock, so replays and
 * out-of-order deliveries cannot bring back an older version or undo a revocation.
 *
 * Ordering rule for two versions of the same consent (same system, type and id): the one with the later
 * `source.lastUpdated` wins (same time: the higher numeric versionId); a version without `lastUpdated` never replaces one that has it. A revocation
 * at time R is overridden only by a version whose `lastUpdated` is after R (the source re-issued it).
 */
import {
  type ConsentDecision,
  type ConsentRequest,
  type DecisionValue,
  type EvaluationPolicy,
  evaluateConsent,
} from './evaluate.ts';
import { type ConsentState, consentKey } from './model.ts';

export type UpsertResult = 'inserted' | 'updated' | 'unchanged' | 'stale';

export class ConsentStore {
  readonly #policy: EvaluationPolicy;
  /** subject → (consent key → state). Arrays are rebuilt on write, so a check never sees a half-done write. */
  readonly #bySubject = new Map<string, ConsentState[]>();
  /** consent key → subject, so a consent re-linked to another person leaves its old subject. */
  readonly #subjectOf = new Map<string, string>();

  constructor(policy: EvaluationPolicy) {
    this.#policy = policy;
  }

  /** Inserts or replaces one consent, unless the stored version is newer (see the ordering rule). */
  upsert(state: ConsentState): UpsertResult {
    const key = consentKey(state.source);
    const previousSubject = this.#subjectOf.get(key);
    const current = previousSubject === undefined ? undefined : this.#find(previousSubject, key);
    if (current !== undefined) {
      const verdict = compareVersions(state, current);
      if (verdict !== 'newer') return verdict;
      this.#remove(previousSubject as string, key);
    }
    const list = this.#bySubject.get(state.subject) ?? [];
    this.#bySubject.set(state.subject, [...list, state]);
    this.#subjectOf.set(key, state.subject);
    return current === undefined ? 'inserted' : 'updated';
  }

  /** Marks one consent revoked at `at`. Returns false when the store does not hold it for this subject. */
  revoke(subject: string, key: string, at: Date): boolean {
    const current = this.#find(subject, key);
    if (current === undefined) return false;
    this.#replace(subject, key, { ...current, status: 'revoked', revokedAt: at.getTime() });
    return true;
  }

  /** Revokes every consent of a person (a general withdrawal). Returns how many were revoked. */
  revokeAll(subject: string, at: Date): number {
    const list = this.#bySubject.get(subject) ?? [];
    const revokedAt = at.getTime();
    this.#bySubject.set(
      subject,
      list.map((s) => (s.status === 'revoked' ? s : { ...s, status: 'revoked' as const, revokedAt })),
    );
    return list.filter((s) => s.status !== 'revoked').length;
  }

  /** The consents held for a person (any status). */
  consentsOf(subject: string): readonly ConsentState[] {
    return this.#bySubject.get(subject) ?? [];
  }

  /** The send-time check: the decision for this person's data, now. */
  checkAtSend(subject: string, request: Omit<ConsentRequest, 'subject'>): ConsentDecision {
    return evaluateConsent(this.#bySubject.get(subject) ?? [], { ...request, subject }, this.#policy);
  }

  /** Shorthand for callers that only need the verdict. */
  decide(subject: string, request: Omit<ConsentRequest, 'subject'>): DecisionValue {
    return this.checkAtSend(subject, request).decision;
  }

  /** The person a consent is held for, if this store holds it. */
  subjectOfKey(key: string): string | undefined {
    return this.#subjectOf.get(key);
  }

  /** Drops everything held for a person (a cache evicting them; it can be loaded again). */
  forget(subject: string): void {
    for (const s of this.#bySubject.get(subject) ?? []) this.#subjectOf.delete(consentKey(s.source));
    this.#bySubject.delete(subject);
  }

  get subjectCount(): number {
    return this.#bySubject.size;
  }

  get consentCount(): number {
    return this.#subjectOf.size;
  }

  #find(subject: string, key: string): ConsentState | undefined {
    return this.#bySubject.get(subject)?.find((s) => consentKey(s.source) === key);
  }

  #replace(subject: string, key: string, next: ConsentState): void {
    const list = this.#bySubject.get(subject) ?? [];
    this.#bySubject.set(
      subject,
      list.map((s) => (consentKey(s.source) === key ? next : s)),
    );
  }

  #remove(subject: string, key: string): void {
    const rest = (this.#bySubject.get(subject) ?? []).filter((s) => consentKey(s.source) !== key);
    if (rest.length === 0) this.#bySubject.delete(subject);
    else this.#bySubject.set(subject, rest);
    this.#subjectOf.delete(key);
  }
}

function compareVersions(incoming: ConsentState, current: ConsentState): 'newer' | 'unchanged' | 'stale' {
  const inTime = incoming.source.lastUpdated;
  const curTime = current.source.lastUpdated;
  if (current.status === 'revoked' && current.revokedAt !== undefined) {
    return inTime !== undefined && inTime > current.revokedAt ? 'newer' : 'stale';
  }
  if (curTime !== undefined) {
    if (inTime === undefined || inTime < curTime) return 'stale';
    if (inTime === curTime) return sameTimeVersions(incoming.source.version, current.source.version);
    return 'newer';
  }
  return inTime !== undefined || incoming.source.version !== current.source.version ? 'newer' : 'unchanged';
}

/** Same `lastUpdated`: a numerically higher versionId is newer; anything else keeps what is stored. */
function sameTimeVersions(
  incoming: string | undefined,
  current: string | undefined,
): 'newer' | 'unchanged' | 'stale' {
  if (incoming === current) return 'unchanged';
  const a = Number(incoming);
  const b = Number(current);
  return incoming !== undefined &&
    current !== undefined &&
    Number.isInteger(a) &&
    Number.isInteger(b) &&
    a > b
    ? 'newer'
    : 'stale';
}
