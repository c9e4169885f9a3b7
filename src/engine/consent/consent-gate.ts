import type { PseudonymKey } from '../../core/anonymize/pseudonym.ts';
import {
  type ConsentDecision,
  type ConsentState,
  ConsentStore,
  consentFromFhir,
  consentKey,
} from '../../core/consent/index.ts';
import { DEFAULT_CLOCK_SKEW_SECONDS, isEarlierStamp } from '../../core/fhir/instant.ts';
import type { Outcome } from '../../core/mapping/outcome.ts';
import type { Source } from '../../core/ports/source.ts';
import type { ConsentLookup, StateStore, StoredConsent } from '../store/state-store.ts';

/** The consent stage of a flow, from its file. */
export interface ConsentSettings {
  /** The flow's purpose of use (HL7 v3 PurposeOfUse). */
  readonly purpose: string;
  /** Who receives the data, as consent rules name recipients. */
  readonly recipient: { readonly id: string; readonly role: string };
  readonly policyVersion: string;
  readonly defaultDecision: 'permit' | 'deny';
  /** Re-read consents from the source before a send if the last read is older than this. */
  readonly refreshMs: number;
  /**
   * A consent stamped further ahead of the local clock than this still applies but does not move the
   * read position (the source's clock is off; what it stamps correctly later must still be read).
   * Default `DEFAULT_CLOCK_SKEW_SECONDS` (`source.clockSkewSeconds`).
   */
  readonly clockSkewMs?: number;
}

/** The FHIR stream consents are read from. */
export const CONSENT_STREAM = 'Consent';

/** How many people's consents the gate keeps in memory when the state store can be read on a miss. */
export const DEFAULT_CONSENT_CACHE = 20_000;

/**
 * Consent at ingest and at send time. Consents are read from the source like any stream, kept in a
 * store indexed by person (pseudonym) and persisted with the flow state, so every run starts from the
 * current state. Before a send the gate re-reads what changed at the source, so a revocation committed
 * before the send-time check stops the send.
 *
 * Memory stays bounded whatever the population: when the state store can be read synchronously, the
 * gate holds at most `cacheSize` people (least recently used first out) and reads a person's stored
 * consents on a miss. People with consents read but not yet committed are pinned until the page that
 * carries them is committed (`committed(pins)`): pins are counted, so pages in flight together each
 * release only their own.
 */
export class ConsentGate {
  readonly settings: ConsentSettings;
  #store: ConsentStore;
  readonly #system: string;
  readonly #key: PseudonymKey;
  readonly #cacheSize: number;
  #lookup: ConsentLookup | undefined;
  /** People held in memory, least recently used first (only when backed by a lookup). */
  readonly #recent = new Map<string, true>();
  /** People whose consents changed and are not yet committed, with how many pages hold them. */
  readonly #pinned = new Map<string, number>();
  #lastRefresh = 0;
  #position: string | undefined;

  constructor(
    settings: ConsentSettings,
    system: string,
    pseudonymKey: PseudonymKey,
    options: { cacheSize?: number } = {},
  ) {
    this.settings = settings;
    this.#system = system;
    this.#key = pseudonymKey;
    this.#cacheSize = Math.max(1, options.cacheSize ?? DEFAULT_CONSENT_CACHE);
    this.#store = this.#emptyStore();
  }

  /**
   * Binds the gate to what earlier runs read: a synchronous lookup when the state store has one (the
   * cache starts empty), else every stored consent loaded into memory. Returns how many are stored.
   */
  async load(state: StateStore, flow: string): Promise<number> {
    this.#store = this.#emptyStore();
    this.#recent.clear();
    this.#pinned.clear();
    const lookup = await state.consentLookup?.(flow);
    this.#lookup = lookup;
    if (lookup) return lookup.count();
    const stored = await state.listConsents(flow);
    for (const s of stored) this.#store.upsert(JSON.parse(s.state) as ConsentState);
    return stored.length;
  }

  /**
   * Parses one source Consent and applies it. `stored` is what to persist with the page: absent when
   * the store already holds this version or a newer one (an older version never overwrites a newer).
   */
  ingest(
    resource: unknown,
  ): Outcome<{ state: ConsentState; stored?: StoredConsent; subject: string; pins: string[] }> {
    const parsed = consentFromFhir(resource, {
      system: this.#system,
      pseudonymKey: this.#key,
      policyVersion: this.settings.policyVersion,
    });
    if (!parsed.ok) return parsed;
    const state = parsed.value;
    const key = consentKey(state.source);
    const previous = this.#store.subjectOfKey(key) ?? this.#lookup?.subjectOf(key);
    if (previous !== undefined) this.#hold(previous);
    this.#hold(state.subject);
    const result = this.#store.upsert(state);
    const changed = result === 'inserted' || result === 'updated';
    const pins: string[] = [];
    if (changed) {
      pins.push(state.subject);
      if (previous !== undefined && previous !== state.subject) pins.push(previous);
      for (const subject of pins) this.#pinned.set(subject, (this.#pinned.get(subject) ?? 0) + 1);
    }
    this.#evict();
    const value = changed
      ? {
          state,
          stored: { key, subject: state.subject, state: JSON.stringify(state) },
          subject: state.subject,
          pins,
        }
      : { state, subject: state.subject, pins };
    return { ok: true, value, warnings: parsed.warnings };
  }

  /**
   * Runs `work` — any number of `ingest` and `check` calls — with the state store's reads in one
   * snapshot (much cheaper than a read per cache miss). Nothing in `work` may wait for anything.
   */
  batch<T>(work: () => T): T {
    return this.#lookup === undefined ? work() : this.#lookup.snapshot(work);
  }

  /** The decision for sending this person's data of this type, now. */
  check(subject: string, resourceType: string, at: Date = new Date()): ConsentDecision {
    this.#hold(subject);
    const decision = this.#store.checkAtSend(subject, {
      purpose: this.settings.purpose,
      recipient: this.settings.recipient,
      resourceType,
      at,
    });
    this.#evict();
    return decision;
  }

  /**
   * Consents are persisted: the people a committed page pinned (`pins`, as `ingest` and `refresh`
   * returned them) may leave memory now, unless a page still in flight holds them too. Without
   * `pins`, everyone read so far (one page at a time).
   */
  committed(pins?: Iterable<string>): void {
    if (pins === undefined) this.#pinned.clear();
    else {
      for (const subject of pins) {
        const held = (this.#pinned.get(subject) ?? 0) - 1;
        if (held > 0) this.#pinned.set(subject, held);
        else this.#pinned.delete(subject);
      }
    }
    this.#evict();
  }

  /** How many people the gate holds in memory (bounded by the cache size once pages are committed). */
  get heldSubjects(): number {
    return this.#store.subjectCount;
  }

  #emptyStore(): ConsentStore {
    return new ConsentStore({
      version: this.settings.policyVersion,
      defaultDecision: this.settings.defaultDecision,
    });
  }

  /** Makes sure a person's stored consents are in memory, and marks them recently used. */
  #hold(subject: string): void {
    const lookup = this.#lookup;
    if (lookup === undefined) return;
    if (this.#recent.delete(subject)) {
      this.#recent.set(subject, true);
      return;
    }
    for (const json of lookup.statesOf(subject)) this.#store.upsert(JSON.parse(json) as ConsentState);
    this.#recent.set(subject, true);
  }

  #evict(): void {
    if (this.#lookup === undefined) return;
    let excess = this.#recent.size - this.#cacheSize;
    if (excess <= 0) return;
    for (const subject of this.#recent.keys()) {
      if (excess <= 0) break;
      if (this.#pinned.has(subject)) continue;
      this.#recent.delete(subject);
      this.#store.forget(subject);
      excess--;
    }
  }

  /**
   * Remembers how far the consent stream has been read (for send-time refreshes) and the instant that
   * read started (`readAt`, epoch ms): every change committed at the source before it is known.
   */
  noteStreamPosition(position: string | undefined, readAt: number = Date.now()): void {
    // As times: positions may be written in any zone.
    if (
      position !== undefined &&
      (this.#position === undefined || isEarlierStamp(this.#position, position))
    ) {
      this.#position = position;
    }
    if (readAt > this.#lastRefresh) this.#lastRefresh = readAt;
  }

  /**
   * Re-reads consents changed at the source since the last read (when older than `refreshMs`).
   * Returns the states read, for the caller to persist with its page, the subjects they concern, the
   * pins to release once that page is committed and the instant the consents it knows were read as
   * of: when it read, the instant the read started; when the last read is recent enough, that read's
   * (absent before any read).
   */
  async refresh(
    source: Source,
    signal: AbortSignal,
    now: number = Date.now(),
  ): Promise<{
    stored: StoredConsent[];
    subjects: Set<string>;
    pins: string[];
    failed: number;
    readAt?: number;
  }> {
    const out = {
      stored: [] as StoredConsent[],
      subjects: new Set<string>(),
      pins: [] as string[],
      failed: 0,
    };
    if (now - this.#lastRefresh < this.settings.refreshMs) {
      return this.#lastRefresh > 0 ? { ...out, readAt: this.#lastRefresh } : out;
    }
    const since = this.#position;
    for await (const page of source.read(CONSENT_STREAM, since, signal)) {
      for (const record of page.records) {
        const result = this.ingest(record.resource);
        if (!result.ok) {
          out.failed++;
          continue;
        }
        if (result.value.stored) {
          out.stored.push(result.value.stored);
          out.subjects.add(result.value.subject);
        }
        out.pins.push(...result.value.pins);
        const at = result.value.state.source.lastUpdated;
        if (at !== undefined && at <= now + (this.settings.clockSkewMs ?? DEFAULT_CLOCK_SKEW_SECONDS * 1000))
          this.noteStreamPosition(new Date(at).toISOString(), now);
      }
    }
    this.#lastRefresh = now;
    // Every change committed at the source before this instant was in what was just read.
    return { ...out, readAt: now };
  }
}
