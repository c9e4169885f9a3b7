import type { AuditEventInput, AuditPurpose } from '../audit/entry.ts';
import type { BatchManifest, NewRefusedRemoval, RefusedRemoval, SeenVersion } from '../store/state-store.ts';

/** What the audit needs to know about one record of a page besides its outcome. */
export interface RecordNote {
  /** A code: the withhold reason, the quarantine code, `consent-directive`. */
  readonly reason?: string;
  /** The person's pseudonym for patient data. */
  readonly subject?: string;
  /** The consent decision that withheld it. */
  readonly decision?: {
    readonly value: string;
    readonly rule: string;
    readonly consent: string;
    readonly provision: string;
    readonly policy: string;
  };
}

export interface AuditContext {
  readonly flow: string;
  readonly runId: string;
  readonly recipient: string;
  readonly purpose?: string;
}

const PSEUDONYM = /^p[a-z2-7]{32}$/;

/**
 * The audit entries of one page: one per record that was sent, withheld, quarantined or applied as a
 * consent directive, plus one per batch and per deletion/suppression. Patient data is named only by
 * its pseudonym; provider and organisation records by `Type/id`. No record content.
 */
export function pageAuditEntries(input: {
  readonly ctx: AuditContext;
  readonly stream: string;
  readonly refs: readonly (string | undefined)[];
  readonly outcomes: ReadonlyMap<number, SeenVersion['outcome']>;
  readonly notes: ReadonlyMap<number, RecordNote>;
  readonly manifests: readonly BatchManifest[];
  readonly deletedRecords: number;
  readonly suppressedSubjects: readonly string[];
  readonly suppressedRecords: number;
  /** Records withheld now whose earlier deliveries were removed: ledger ref and withhold reason. */
  readonly retracted?: readonly { readonly ref: string; readonly reason: string }[];
  /** Removals the target refused in this page (kept and tried again later). */
  readonly refusedRemovals?: readonly NewRefusedRemoval[];
  /** The pseudonym of a patient record's `Patient/id` (patient ids never enter the audit). */
  readonly pseudonymOf: (patientId: string) => string;
}): AuditEventInput[] {
  const { ctx } = input;
  const base = {
    flow: ctx.flow,
    runId: ctx.runId,
    recipient: ctx.recipient,
    ...(ctx.purpose === undefined ? {} : { purpose: ctx.purpose as AuditPurpose }),
  };
  // Which batch carried each record (by ledger ref: `Type/id` or the pseudonym).
  const batchOf = new Map<string, string>();
  for (const m of input.manifests) {
    const envelope = JSON.parse(m.envelope) as { items?: { sourceId?: string }[] };
    for (const item of envelope.items ?? []) if (item.sourceId) batchOf.set(item.sourceId, m.batchId);
  }
  const entries: AuditEventInput[] = [];
  for (const m of input.manifests) {
    entries.push({
      ...base,
      kind: 'send',
      batchId: m.batchId,
      outcome: (m.results.rejected ?? 0) + (m.results.ambiguous ?? 0) > 0 ? 'minor-failure' : 'success',
      reason: 'batch',
      details: {
        object: m.object,
        records: m.recordCount,
        signed: m.jws !== undefined,
        policy: m.policyVersion,
      },
    });
  }
  for (const [index, outcome] of input.outcomes) {
    const note = input.notes.get(index) ?? {};
    const rawRef = input.refs[index];
    const patientId = rawRef?.startsWith('Patient/') ? rawRef.slice('Patient/'.length) : undefined;
    const candidate = note.subject ?? (patientId === undefined ? undefined : input.pseudonymOf(patientId));
    const subject = candidate !== undefined && PSEUDONYM.test(candidate) ? candidate : undefined;
    // Patient records are named by pseudonym only; their source id is PHI. A record of the patient
    // stream without a usable id is described by its stream alone.
    const ref = subject === undefined && input.stream !== 'Patient' ? rawRef : undefined;
    const who = {
      ...(subject === undefined ? {} : { subject: subject as AuditEventInput['subject'] }),
      details: { stream: input.stream, ...(ref === undefined ? {} : { source: ref }) },
    };
    switch (outcome) {
      case 'delivered': {
        const batchId = batchOf.get(subject ?? ref ?? '');
        // Nothing was sent when the target already had this version (ledger): no disclosure to record.
        if (batchId === undefined) break;
        entries.push({ ...base, ...who, kind: 'send', batchId, outcome: 'success' });
        break;
      }
      case 'withheld':
        entries.push({
          ...base,
          ...who,
          kind: note.decision ? 'access-decision' : 'withhold',
          outcome: note.decision ? 'denied' : 'success',
          reason: note.reason ?? 'withheld',
          details: {
            ...who.details,
            ...(note.decision
              ? {
                  decision: note.decision.value,
                  rule: note.decision.rule,
                  consent: note.decision.consent,
                  provision: note.decision.provision,
                  policy: note.decision.policy,
                }
              : {}),
          },
        });
        break;
      case 'quarantined':
        entries.push({
          ...base,
          ...who,
          kind: 'quarantine',
          outcome: 'minor-failure',
          reason: note.reason ?? 'quarantined',
        });
        break;
      case 'applied':
        entries.push({
          ...base,
          ...who,
          kind: 'receive',
          outcome: 'success',
          reason: note.reason ?? 'consent-directive',
        });
        break;
      case 'deleted':
        break;
    }
  }
  if (input.deletedRecords > 0) {
    entries.push({
      ...base,
      kind: 'send',
      outcome: 'success',
      reason: 'source-deletion',
      details: { deleted: input.deletedRecords },
    });
  }
  for (const subject of input.suppressedSubjects) {
    if (!PSEUDONYM.test(subject)) continue;
    entries.push({
      ...base,
      kind: 'withhold',
      subject: subject as AuditEventInput['subject'],
      outcome: 'success',
      reason: 'consent-revoked-suppression',
      details: { stream: input.stream },
    });
  }
  for (const { ref, reason } of input.retracted ?? []) {
    const { source, ...who } = removalWho(ref);
    if (who.subject === undefined && source === undefined) continue;
    entries.push({
      ...base,
      ...who,
      kind: 'withhold',
      outcome: 'success',
      reason: 'withheld-retraction',
      details: { stream: input.stream, because: reason, ...(source === undefined ? {} : { source }) },
    });
  }
  entries.push(...removalAuditEntries(ctx, { refused: input.refusedRemovals ?? [] }));
  return entries;
}

/** Who a removal concerns, as an entry names it: the pseudonym, or a provider/organisation `Type/id`. */
function removalWho(sourceRef: string): Pick<AuditEventInput, 'subject'> & { source?: string } {
  if (PSEUDONYM.test(sourceRef)) return { subject: sourceRef as AuditEventInput['subject'] };
  // A ledger ref is a pseudonym or a provider/organisation `Type/id`, never a clear patient id.
  return sourceRef.startsWith('Patient/') ? {} : { source: sourceRef };
}

/**
 * Entries for removals at the target that were refused (one per target record: the record is still
 * there) and for refused removals a later attempt completed (named as the removal they finish).
 */
export function removalAuditEntries(
  ctx: AuditContext,
  outcome: {
    readonly refused?: readonly NewRefusedRemoval[];
    readonly completed?: readonly RefusedRemoval[];
  },
): AuditEventInput[] {
  const base = {
    flow: ctx.flow,
    runId: ctx.runId,
    recipient: ctx.recipient,
    ...(ctx.purpose === undefined ? {} : { purpose: ctx.purpose as AuditPurpose }),
  };
  const entries: AuditEventInput[] = [];
  for (const r of outcome.refused ?? []) {
    const { source, ...who } = removalWho(r.sourceRef);
    entries.push({
      ...base,
      ...who,
      kind: 'send',
      outcome: 'minor-failure',
      reason: 'removal-refused',
      details: {
        object: r.object,
        cause: r.cause,
        codes: r.codes.join(',').slice(0, 256),
        ...(r.because === undefined ? {} : { because: r.because }),
        ...(source === undefined ? {} : { source }),
      },
    });
  }
  for (const r of outcome.completed ?? []) {
    const { source, ...who } = removalWho(r.sourceRef);
    entries.push({
      ...base,
      ...who,
      kind: r.cause === 'source-deletion' ? 'send' : 'withhold',
      outcome: 'success',
      reason: r.cause,
      details: {
        object: r.object,
        refusedSince: r.firstRefusedAt,
        attempts: r.attempts + 1,
        ...(r.because === undefined ? {} : { because: r.because }),
        ...(source === undefined ? {} : { source }),
      },
    });
  }
  return entries;
}
