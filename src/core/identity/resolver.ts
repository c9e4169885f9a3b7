import { asPersonId, type PersonId } from '../model/ids.ts';
import { DEFAULT_IDENTITY_CONFIG, type IdentityConfig } from './config.ts';
import { type Explanation, type IdentityRecord, type MatchResult, matchPair } from './match.ts';

/**
 * Identity resolution over a growing set of records: each record is resolved to a PersonId when it
 * arrives (before any event is attached to it). Links, reviews, merges and unmerges are events that
 * downstream stages consume; a pair in the review band is never merged without an operator.
 */

export type IdentityEvent =
  | { readonly type: 'created'; readonly seq: number; readonly personId: PersonId; readonly record: string }
  | {
      readonly type: 'linked';
      readonly seq: number;
      readonly personId: PersonId;
      readonly record: string;
      readonly matchedRecord: string;
      readonly explanation: Explanation;
    }
  | {
      readonly type: 'review-requested';
      readonly seq: number;
      readonly record: string;
      readonly candidate: string;
      readonly personId: PersonId;
      readonly candidatePersonId: PersonId;
      readonly explanation: Explanation;
    }
  | {
      readonly type: 'merged';
      readonly seq: number;
      readonly survivor: PersonId;
      readonly merged: PersonId;
      readonly records: readonly string[];
      readonly reason: string;
    }
  | {
      readonly type: 'unmerged';
      readonly seq: number;
      readonly from: PersonId;
      readonly personId: PersonId;
      readonly record: string;
      readonly reason: string;
    };

type WithoutSeq<E> = E extends unknown ? Omit<E, 'seq'> : never;

export interface Resolution {
  readonly personId: PersonId;
  /** The best candidate's verdict, when there was one. */
  readonly match?: MatchResult & { readonly candidate: string };
  readonly events: readonly IdentityEvent[];
}

export class IdentityResolver {
  readonly #config: IdentityConfig;
  readonly #records = new Map<string, IdentityRecord>();
  readonly #personOf = new Map<string, PersonId>();
  readonly #blocks = new Map<string, Set<string>>();
  readonly #events: IdentityEvent[] = [];
  #nextPerson = 1;

  constructor(config: IdentityConfig = DEFAULT_IDENTITY_CONFIG) {
    this.#config = config;
  }

  get events(): readonly IdentityEvent[] {
    return this.#events;
  }

  personOf(recordKey: string): PersonId | undefined {
    return this.#personOf.get(recordKey);
  }

  /** Every person with its record keys. */
  clusters(): Map<PersonId, string[]> {
    const out = new Map<PersonId, string[]>();
    for (const [key, person] of this.#personOf) out.set(person, [...(out.get(person) ?? []), key]);
    return out;
  }

  /** Resolves a record: links it to the best candidate above the match threshold, else a new person. */
  resolve(record: IdentityRecord): Resolution {
    const before = this.#events.length;
    const existing = this.#personOf.get(record.key);
    if (existing !== undefined) {
      // A new version of a known record: refresh its data, keep its person.
      this.#records.set(record.key, record);
      this.#index(record);
      return { personId: existing, events: [] };
    }
    let best: (MatchResult & { candidate: string }) | undefined;
    for (const candidate of this.#candidates(record)) {
      const other = this.#records.get(candidate) as IdentityRecord;
      const result = matchPair(record, other, this.#config);
      if (best === undefined || rank(result) > rank(best)) best = { ...result, candidate };
    }
    this.#records.set(record.key, record);
    this.#index(record);
    let personId: PersonId;
    if (best?.decision === 'match') {
      personId = this.#personOf.get(best.candidate) as PersonId;
      this.#personOf.set(record.key, personId);
      this.#emit({
        type: 'linked',
        personId,
        record: record.key,
        matchedRecord: best.candidate,
        explanation: best.explanation,
      });
    } else {
      personId = asPersonId(`person-${String(this.#nextPerson++).padStart(6, '0')}`);
      this.#personOf.set(record.key, personId);
      this.#emit({ type: 'created', personId, record: record.key });
      if (best?.decision === 'review') {
        this.#emit({
          type: 'review-requested',
          record: record.key,
          candidate: best.candidate,
          personId,
          candidatePersonId: this.#personOf.get(best.candidate) as PersonId,
          explanation: best.explanation,
        });
      }
    }
    return { personId, ...(best ? { match: best } : {}), events: this.#events.slice(before) };
  }

  /** An operator's merge (e.g. after review): every record of `merged` moves to `survivor`. */
  merge(survivor: PersonId, merged: PersonId, reason: string): IdentityEvent {
    const records = [...this.#personOf].filter(([, p]) => p === merged).map(([k]) => k);
    if (records.length === 0 || survivor === merged) throw new Error('nothing to merge');
    for (const key of records) this.#personOf.set(key, survivor);
    return this.#emit({ type: 'merged', survivor, merged, records, reason });
  }

  /** Splits one record off its person into a new person (a wrong link undone). */
  unmerge(recordKey: string, reason: string): IdentityEvent {
    const from = this.#personOf.get(recordKey);
    if (from === undefined) throw new Error('unknown record');
    const personId = asPersonId(`person-${String(this.#nextPerson++).padStart(6, '0')}`);
    this.#personOf.set(recordKey, personId);
    return this.#emit({ type: 'unmerged', from, personId, record: recordKey, reason });
  }

  #emit(event: WithoutSeq<IdentityEvent>): IdentityEvent {
    const full = { ...event, seq: this.#events.length + 1 } as IdentityEvent;
    this.#events.push(full);
    return full;
  }

  /** Blocking keys: identifiers, contact points, birth date and a name/birth-year key. */
  #keys(r: IdentityRecord): string[] {
    const keys = [
      ...r.mrns.map((m) => `mrn:${m}`),
      ...r.npis.map((n) => `npi:${n}`),
      ...r.emails.map((e) => `email:${e}`),
      ...r.phones.map((p) => `phone:${p}`),
    ];
    if (r.enterpriseId) keys.push(`eid:${r.enterpriseId}`);
    if (r.birthDate) keys.push(`dob:${r.birthDate}`);
    if (r.familyName) keys.push(`fam:${r.kind}:${r.familyName.slice(0, 3)}`);
    if (r.givenName) keys.push(`giv:${r.kind}:${r.givenName.slice(0, 3)}`);
    return keys;
  }

  #index(r: IdentityRecord): void {
    for (const k of this.#keys(r)) {
      const set = this.#blocks.get(k) ?? new Set<string>();
      set.add(r.key);
      this.#blocks.set(k, set);
    }
  }

  #candidates(r: IdentityRecord): Set<string> {
    const out = new Set<string>();
    for (const k of this.#keys(r))
      for (const key of this.#blocks.get(k) ?? []) if (key !== r.key) out.add(key);
    return out;
  }
}

function rank(r: MatchResult): number {
  const base = r.decision === 'match' ? 2000 : r.decision === 'review' ? 1000 : 0;
  const detail =
    r.explanation.method === 'probabilistic'
      ? r.explanation.score
      : r.explanation.method === 'deterministic'
        ? 500
        : -500;
  return base + detail;
}
