import type { PseudonymKey } from '../../core/anonymize/pseudonym.ts';
import {
  type ConsentDecision,
  type ConsentState,
  ConsentStore,
  consentFromFhir,
  consentKey,
} from '../../core/consent/index.ts';
import type { Outcome } from '../../core/mapping/outcome.ts';
import type { Source } from '../../core/ports/source.ts';
import type { StateStore, StoredConsent } from '../store/state-store.ts';

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
}

/** The FHIR stream consents are read from. */
export const CONSENT_STREAM = 'Consent';

/**
 * Consent at ingest and at send time. Consents are read from the source like any stream, kept in a
 * store indexed by person (pseudonym) and persisted with the flow state, so every run starts from the
 * current state. Before a send the gate re-reads what changed at the source, so a revocation committed
 * before the send-time check stops the send.
 */
export class ConsentGate {
  readonly settings: ConsentSettings;
  readonly #store: ConsentStore;
  readonly #system: string;
  readonly #key: PseudonymKey;
  #lastRefresh = 0;
  #position: string | undefined;

  constructor(settings: ConsentSettings, system: string, pseudonymKey: PseudonymKey) {
    this.settings = settings;
    this.#system = system;
    this.#key = pseudonymKey;
    this.#store = new ConsentStore({
      version: settings.policyVersion,
      defaultDecision: settings.defaultDecision,
    });
  }

  /** Loads what earlier runs read. */
  async load(state: StateStore, flow: string): Promise<number> {
    const stored = await state.listConsents(flow);
    for (const s of stored) this.#store.upsert(JSON.parse(s.state) as ConsentState);
    return stored.length;
  }

  /** Parses one source Consent; on success it is applied to the store and returned for persisting. */
  ingest(resource: unknown): Outcome<{ state: ConsentState; stored: StoredConsent; subject: string }> {
    const parsed = consentFromFhir(resource, {
      system: this.#system,
      pseudonymKey: this.#key,
      policyVersion: this.settings.policyVersion,
    });
    if (!parsed.ok) return parsed;
    const state = parsed.value;
    this.#store.upsert(state);
    const stored = { key: consentKey(state.source), subject: state.subject, state: JSON.stringify(state) };
    return { ok: true, value: { state, stored, subject: state.subject }, warnings: parsed.warnings };
  }

  /** The decision for sending this person's data of this type, now. */
  check(subject: string, resourceType: string, at: Date = new Date()): ConsentDecision {
    return this.#store.checkAtSend(subject, {
      purpose: this.settings.purpose,
      recipient: this.settings.recipient,
      resourceType,
      at,
    });
  }

  /** Remembers how far the consent stream has been read (for send-time refreshes). */
  noteStreamPosition(position: string | undefined): void {
    if (position !== undefined && (this.#position === undefined || position > this.#position)) {
      this.#position = position;
    }
    this.#lastRefresh = Date.now();
  }

  /**
   * Re-reads consents changed at the source since the last read (when older than `refreshMs`).
   * Returns the states read, for the caller to persist with its page, and the subjects they concern.
   */
  async refresh(
    source: Source,
    signal: AbortSignal,
    now: number = Date.now(),
  ): Promise<{ stored: StoredConsent[]; subjects: Set<string>; failed: number }> {
    const out = { stored: [] as StoredConsent[], subjects: new Set<string>(), failed: 0 };
    if (now - this.#lastRefresh < this.settings.refreshMs) return out;
    const since = this.#position;
    for await (const page of source.read(CONSENT_STREAM, since, signal)) {
      for (const record of page.records) {
        const result = this.ingest(record.resource);
        if (!result.ok) {
          out.failed++;
          continue;
        }
        out.stored.push(result.value.stored);
        out.subjects.add(result.value.subject);
        const at = result.value.state.source.lastUpdated;
        if (at !== undefined) this.noteStreamPosition(new Date(at).toISOString());
      }
    }
    this.#lastRefresh = now;
    return out;
  }
}
