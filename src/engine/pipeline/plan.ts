import type { ResolvedFlow } from '../config/load-flow.ts';
import { CONSENT_STREAM, ConsentGate } from '../consent/consent-gate.ts';
import type { FlowRuntime } from '../runtime/build-flow.ts';
import { processRecord, type RecordStageContext } from './record-stages.ts';

/** What a flow would move, per stream and per target object and field — counts only. */
export interface FlowPlan {
  readonly flow: string;
  readonly definitionHash: string;
  readonly purpose: string;
  readonly recipient: string;
  readonly consentPolicy: string | null;
  /** The stated basis for moving patient data without a consent stage (`stages.withoutConsent`). */
  readonly withoutConsent?: string;
  readonly streams: Record<
    string,
    {
      read: number;
      wouldSend: number;
      withheld: Record<string, number>;
      quarantined: Record<string, number>;
      /**
       * Withheld records, by reason, that earlier runs delivered and that the run would remove at the
       * target (`delivered: delete`): the flow's delivery ledger holds their target records.
       */
      wouldRetract: Record<string, number>;
      /**
       * Patients withheld by consent now, by reason, whose profiles earlier runs delivered: a run removes
       * them at the target (consent suppression) when it reads the consent change, unless the flow keeps
       * deliveries (`stages.consent.onRevoke: ignore`).
       */
      wouldSuppress: Record<string, number>;
    }
  >;
  /** Target object → records and, per field, how many records would carry a value. */
  readonly objects: Record<string, { records: number; fields: Record<string, number> }>;
  /** Removals the CRM refused earlier (still at the target), which the run would try again. */
  refusedRemovals?: number;
}

/**
 * A dry run: reads everything the flow's source offers (consents first, into a throw-away gate) and
 * runs every record-level stage — validation, provenance and withhold policy, consent, mapping — but
 * writes nothing, moves no checkpoint and sends nothing. The artefact a privacy reviewer signs.
 */
export async function planFlow(
  flow: ResolvedFlow,
  runtime: FlowRuntime,
  signal: AbortSignal,
): Promise<FlowPlan> {
  const settings = flow.file.stages.consent;
  const gate = settings
    ? new ConsentGate(
        {
          purpose: flow.file.purpose,
          recipient: settings.recipient,
          policyVersion: settings.policyVersion,
          defaultDecision: settings.defaultDecision,
          refreshMs: 0,
        },
        flow.file.source.system,
        flow.pseudonymKey,
      )
    : undefined;
  const stages: RecordStageContext = {
    ...runtime.stages,
    asOf: new Date(),
    ...(gate ? { consent: (subject: string, type: string) => gate.check(subject, type) } : {}),
  };
  const plan: FlowPlan = {
    flow: flow.file.flow,
    definitionHash: flow.definitionHash,
    purpose: flow.file.purpose,
    recipient: settings?.recipient.id ?? flow.file.target.system,
    consentPolicy: settings?.policyVersion ?? null,
    ...(flow.file.stages.withoutConsent ? { withoutConsent: flow.file.stages.withoutConsent.basis } : {}),
    streams: {},
    objects: {},
  };
  const refused = (await runtime.store.countRefusedRemovals(flow.file.flow)).count;
  if (refused > 0) plan.refusedRemovals = refused;
  // Everything there is to send: the EHR itself, also when the flow reads change events from a bus
  // (which keeps them for `maxAgeDays` only).
  const source = runtime.bus?.ehr ?? runtime.source;
  for (const stream of source.streams) {
    const s = {
      read: 0,
      wouldSend: 0,
      withheld: {} as Record<string, number>,
      quarantined: {} as Record<string, number>,
      wouldRetract: {} as Record<string, number>,
      wouldSuppress: {} as Record<string, number>,
    };
    plan.streams[stream] = s;
    for await (const page of source.read(stream, undefined, signal)) {
      for (const record of page.records) {
        s.read++;
        if (gate && stream === CONSENT_STREAM) {
          const applied = gate.ingest(record.resource);
          if (!applied.ok) s.quarantined[applied.code] = (s.quarantined[applied.code] ?? 0) + 1;
          continue;
        }
        const verdict = processRecord(record, stages);
        if (verdict.kind === 'quarantine')
          s.quarantined[verdict.code] = (s.quarantined[verdict.code] ?? 0) + 1;
        else if (verdict.kind === 'withheld') {
          s.withheld[verdict.reason] = (s.withheld[verdict.reason] ?? 0) + 1;
          const delivered =
            verdict.retractRef !== undefined &&
            (await runtime.store.ledgerBySource(flow.file.flow, verdict.retractRef)).length > 0;
          if (delivered) s.wouldRetract[verdict.reason] = (s.wouldRetract[verdict.reason] ?? 0) + 1;
          const suppressed =
            verdict.decision !== undefined &&
            verdict.subject !== undefined &&
            settings?.onRevoke !== 'ignore' &&
            (await runtime.store.ledgerBySource(flow.file.flow, verdict.subject)).length > 0;
          if (suppressed) s.wouldSuppress[verdict.reason] = (s.wouldSuppress[verdict.reason] ?? 0) + 1;
        } else {
          s.wouldSend++;
          for (const w of verdict.writes) {
            const o = plan.objects[w.object] ?? { records: 0, fields: {} };
            plan.objects[w.object] = o;
            o.records++;
            for (const [field, value] of Object.entries(w.fields)) {
              if (value !== null && value !== '') o.fields[field] = (o.fields[field] ?? 0) + 1;
            }
            o.fields[w.externalIdField] = (o.fields[w.externalIdField] ?? 0) + 1;
          }
        }
      }
    }
  }
  return plan;
}

/** What changes between two plans: fields that start or stop crossing, and counts that move. */
export function diffPlans(
  before: FlowPlan,
  after: FlowPlan,
): {
  fieldsAdded: string[];
  fieldsRemoved: string[];
  counts: { key: string; before: number; after: number }[];
} {
  const fieldsOf = (p: FlowPlan) =>
    new Set(Object.entries(p.objects).flatMap(([o, v]) => Object.keys(v.fields).map((f) => `${o}.${f}`)));
  const a = fieldsOf(before);
  const b = fieldsOf(after);
  const counts: { key: string; before: number; after: number }[] = [];
  const flat = (p: FlowPlan): Map<string, number> => {
    const m = new Map<string, number>();
    for (const [stream, s] of Object.entries(p.streams)) {
      m.set(`${stream}.wouldSend`, s.wouldSend);
      for (const [r, n] of Object.entries(s.withheld)) m.set(`${stream}.withheld.${r}`, n);
      for (const [c, n] of Object.entries(s.quarantined)) m.set(`${stream}.quarantined.${c}`, n);
      for (const [r, n] of Object.entries(s.wouldRetract ?? {})) m.set(`${stream}.wouldRetract.${r}`, n);
      for (const [r, n] of Object.entries(s.wouldSuppress ?? {})) m.set(`${stream}.wouldSuppress.${r}`, n);
    }
    return m;
  };
  const fa = flat(before);
  const fb = flat(after);
  for (const key of new Set([...fa.keys(), ...fb.keys()])) {
    const x = fa.get(key) ?? 0;
    const y = fb.get(key) ?? 0;
    if (x !== y) counts.push({ key, before: x, after: y });
  }
  return {
    fieldsAdded: [...b].filter((f) => !a.has(f)).sort(),
    fieldsRemoved: [...a].filter((f) => !b.has(f)).sort(),
    counts: counts.sort((p, q) => p.key.localeCompare(q.key)),
  };
}
