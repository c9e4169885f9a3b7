import type { Command } from 'commander';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import { SluiceError } from '../../core/errors/index.ts';
import type { AuditKind } from '../../engine/audit/entry.ts';
import type { ResolvedFlow } from '../../engine/config/load-flow.ts';
import { parseOrRaw, type ReleaseOutcome, releaseQuarantined } from '../../engine/pipeline/release.ts';
import type { RunSummary } from '../../engine/pipeline/summary.ts';
import { buildFlowRuntime, openFlowAudit, openFlowState } from '../../engine/runtime/build-flow.ts';
import { createLogger } from '../../engine/runtime/logger.ts';
import {
  QUARANTINE_STATUSES,
  type QuarantineEntry,
  type QuarantineStatus,
  type StateStore,
} from '../../engine/store/state-store.ts';
import { loadFlowOrReport } from '../load-flow-or-report.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';
import { invalidReasonCode } from '../reason-code.ts';

interface JsonOption {
  json?: boolean;
}

/** Loads the flow and opens its state store for reading; reports errors the CLI way. */
async function withState<T>(
  file: string,
  json: boolean,
  body: (flow: ResolvedFlow, store: StateStore) => Promise<T>,
): Promise<T | number> {
  const flow = loadFlowOrReport(file, json, { offline: true });
  if (typeof flow === 'number') return flow;
  const store = await openFlowState(flow);
  try {
    return await body(flow, store);
  } catch (err) {
    return reportError(err, json);
  } finally {
    await store.close();
  }
}

/** A patient reference given on the command line becomes its pseudonym: the state never holds the id. */
function ledgerRefOf(flow: ResolvedFlow, ref: string): string {
  const match = /^Patient\/([A-Za-z0-9\-.]{1,256})$/.exec(ref);
  if (!match) return ref;
  return pseudonymize(flow.pseudonymKey, flow.file.source.system, 'Patient', match[1] as string);
}

export function registerInspect(program: Command): void {
  const quarantine = program.command('quarantine').description('records held back as invalid or refused');
  quarantine
    .command('list')
    .argument('<flow>', 'flow file')
    .option('--status <status>', 'open, released, discarded or superseded', 'open')
    .option('--code <code>', 'only entries held back with this code')
    .option('--stream <type>', 'only entries of this stream (resource type)')
    .option('--limit <n>', 'at most this many, oldest first', '1000')
    .option('--json', 'one JSON line per entry')
    .description('list quarantined records: code, stage, where they came from (no content)')
    .action(async (file: string, options: JsonOption & Selection & { status: string; limit: string }) => {
      const code = await withState(file, options.json === true, async (flow, store) => {
        const status = options.status as QuarantineStatus;
        const limit = Number(options.limit);
        if (!QUARANTINE_STATUSES.includes(status) || !Number.isInteger(limit) || limit < 1) {
          throw new SluiceError(
            'CFG_ARGUMENTS_INVALID',
            `--status is one of ${QUARANTINE_STATUSES.join(', ')}; --limit a whole number from 1.`,
          );
        }
        const selection = {
          flow: flow.file.flow,
          status,
          ...(options.code === undefined ? {} : { code: options.code }),
          ...(options.stream === undefined ? {} : { stream: options.stream }),
        };
        // Only the entries shown are read; the others are counted.
        const shown = await store.listQuarantine({ ...selection, limit });
        const total = await store.countQuarantineMatching(selection);
        for (const e of shown) {
          if (options.json) printJson(e);
          else
            printLine(
              `${e.id}  ${e.code.padEnd(24)} ${e.stage.padEnd(8)} ${e.sourceRef ?? '-'}  ${e.origin}`,
            );
        }
        const more = total - shown.length;
        if (!options.json)
          printLine(
            `${total} ${status} entr${total === 1 ? 'y' : 'ies'}${more > 0 ? `, the first ${shown.length} shown (--limit)` : ''}`,
          );
        else if (more > 0) process.stderr.write(`note: ${more} more entries not shown (--limit)\n`);
        return EXIT.ok;
      });
      process.exitCode = code;
    });
  quarantine
    .command('show')
    .argument('<flow>', 'flow file')
    .argument('<id>', 'quarantine entry id')
    .option('--json', 'as JSON')
    .option('--with-payload', 'include the quarantined record itself (PHI: mind where the output goes)')
    .description('every issue of one quarantined record, with its path and code')
    .action(async (file: string, id: string, options: JsonOption & { withPayload?: boolean }) => {
      const code = await withState(file, options.json === true, async (_flow, store) => {
        const entry = await store.getQuarantine(id);
        if (!entry)
          throw new SluiceError('QUARANTINE_NOT_FOUND', `No quarantine entry ${id} in this flow's state.`);
        // The record is opened only when asked for, and only an open entry still has it.
        const payload = options.withPayload ? await store.readQuarantinePayload(id) : undefined;
        const record = payload === undefined ? undefined : parseOrRaw(payload);
        const shown = record === undefined ? entry : { ...entry, payload: record };
        if (options.json) printJson(shown);
        else {
          printLine(
            `${entry.id}: ${entry.code} at stage ${entry.stage} (${entry.status}${entry.closedAt ? ` ${entry.closedAt}` : ''})`,
          );
          printLine(
            `  from ${entry.origin}${entry.sourceRef ? ` (${entry.sourceRef})` : ''}, run ${entry.runId}`,
          );
          for (const i of entry.issues)
            printLine(`  ${i.severity} ${i.code} ${i.path || '(record)'}: ${i.message}`);
          if (entry.payloadSha256) printLine(`  record sha256 ${entry.payloadSha256}`);
          if (record !== undefined)
            printLine(typeof record === 'string' ? record : JSON.stringify(record, null, 2));
        }
        if (options.withPayload && record === undefined) {
          process.stderr.write(
            `note: the record of ${id} was erased when the entry was ${entry.status}; its SHA-256 is kept\n`,
          );
        }
        return EXIT.ok;
      });
      process.exitCode = code;
    });

  quarantine
    .command('release')
    .argument('<flow>', 'flow file')
    .argument('[id]', 'quarantine entry id (or select several with --code, --stream, --all)')
    .option('--code <code>', 'every open entry held back with this code')
    .option('--stream <type>', 'every open entry of this stream (resource type)')
    .option('--all', 'every open entry')
    .option('--json', 'one JSON line per entry, then the run')
    .description(
      'run quarantined records through every check again; those that now pass are sent in one run (audited)',
    )
    .action(async (file: string, id: string | undefined, options: JsonOption & Selection) => {
      process.exitCode = await release(file, id, options, options.json === true);
    });
  quarantine
    .command('discard')
    .argument('<flow>', 'flow file')
    .argument('[id]', 'quarantine entry id (or select several with --code, --stream, --all)')
    .requiredOption('--reason <code>', 'why, as a short code (e.g. duplicate, test-data, fixed-at-source)')
    .option('--code <code>', 'every open entry held back with this code')
    .option('--stream <type>', 'every open entry of this stream (resource type)')
    .option('--all', 'every open entry')
    .option('--json', 'one JSON line per entry')
    .description('drop quarantined records for good; each discard and its reason are audited')
    .action(
      async (file: string, id: string | undefined, options: JsonOption & Selection & { reason: string }) => {
        process.exitCode = await discard(file, id, options, options.reason, options.json === true);
      },
    );

  const batches = program.command('batches').description('what was sent, when, why, under which policy');
  batches
    .command('list')
    .argument('<flow>', 'flow file')
    .option('--limit <n>', 'how many, newest first', '20')
    .option('--json', 'one JSON line per batch')
    .action(async (file: string, options: JsonOption & { limit: string }) => {
      const code = await withState(file, options.json === true, async (flow, store) => {
        for (const b of await store.listBatches(flow.file.flow, Number(options.limit) || 20)) {
          const { envelope: _e, jws: _j, ...summary } = b;
          if (options.json) printJson({ ...summary, signed: b.jws !== undefined });
          else
            printLine(
              `${b.batchId}  ${b.createdAt}  ${b.object.padEnd(20)} ${String(b.recordCount).padStart(4)} records  ${b.purpose}  ${b.policyVersion}${b.jws ? '  signed' : ''}`,
            );
        }
        return EXIT.ok;
      });
      process.exitCode = code;
    });
  batches
    .command('show')
    .argument('<flow>', 'flow file')
    .argument('<batchId>', 'batch id')
    .option('--json', 'as JSON')
    .description(
      'a batch manifest: systems, purpose, consent policy, items (pseudonymous), payload hash, signature',
    )
    .action(async (file: string, batchId: string, options: JsonOption) => {
      const code = await withState(file, options.json === true, async (_flow, store) => {
        const batch = await store.getBatch(batchId);
        if (!batch) throw new SluiceError('BATCH_NOT_FOUND', `No batch ${batchId} in this flow's state.`);
        const shown = { ...batch, envelope: JSON.parse(batch.envelope) as unknown };
        if (options.json) printJson(shown);
        else printLine(JSON.stringify(shown, null, 2));
        return EXIT.ok;
      });
      process.exitCode = code;
    });

  const audit = program.command('audit').description('the tamper-evident audit trail of a flow');
  audit
    .command('verify')
    .argument('<flow>', 'flow file')
    .option('--json', 'the report as one JSON line')
    .description('check the whole hash chain and every signed checkpoint; say exactly where it breaks')
    .action(async (file: string, options: JsonOption) => {
      const json = options.json === true;
      const flow = loadFlowOrReport(file, json, { offline: true });
      if (typeof flow === 'number') {
        process.exitCode = flow;
        return;
      }
      const log = await openFlowAudit(flow, { readOnly: true });
      try {
        const report = await log.verify();
        if (json) printJson(report);
        else if (report.ok) {
          printLine(
            `audit log ${report.logId}: ${report.size} entries verified, ${report.checkpoints} signed checkpoint(s), ${report.unsealed} not yet sealed`,
          );
        } else {
          const b = report.firstBreak;
          printLine(`audit log ${report.logId}: BROKEN at entry ${b?.seq} (${b?.kind}): ${b?.message}`);
        }
        process.exitCode = report.ok ? EXIT.ok : EXIT.failed;
      } catch (err) {
        process.exitCode = reportError(err, json);
      } finally {
        await log.close();
      }
    });
  audit
    .command('query')
    .argument('<flow>', 'flow file')
    .option('--subject <ref>', 'a pseudonym, or Patient/ID (turned into its pseudonym)')
    .option('--source <ref>', 'a provider or organisation record, Type/id (e.g. Practitioner/123)')
    .option('--batch <id>', 'a batch id')
    .option('--run <id>', 'a run id')
    .option('--kind <kind>', 'send, withhold, quarantine, access-decision, receive, run-start, run-end, …')
    .option('--recipient <ref>', 'a recipient (system name or Type/id)')
    .option('--from <instant>', 'entries at or after this instant')
    .option('--to <instant>', 'entries before this instant')
    .option('--limit <n>', 'page size', '100')
    .option('--json', 'one JSON line per entry')
    .action(
      async (
        file: string,
        options: JsonOption & {
          subject?: string;
          source?: string;
          batch?: string;
          run?: string;
          kind?: string;
          recipient?: string;
          from?: string;
          to?: string;
          limit: string;
        },
      ) => {
        const json = options.json === true;
        const flow = loadFlowOrReport(file, json, { offline: true });
        if (typeof flow === 'number') {
          process.exitCode = flow;
          return;
        }
        const log = await openFlowAudit(flow, { readOnly: true });
        try {
          const page = await log.query({
            flow: flow.file.flow,
            ...(options.subject ? { subject: ledgerRefOf(flow, options.subject) } : {}),
            ...(options.source ? { source: options.source } : {}),
            ...(options.batch ? { batchId: options.batch } : {}),
            ...(options.run ? { runId: options.run } : {}),
            ...(options.kind ? { kind: options.kind as AuditKind } : {}),
            ...(options.recipient ? { recipient: options.recipient } : {}),
            ...(options.from ? { from: options.from } : {}),
            ...(options.to ? { to: options.to } : {}),
            limit: Number(options.limit) || 100,
          });
          for (const e of page.entries) {
            if (json) printJson(e);
            else
              printLine(
                `#${e.seq} ${e.at} ${e.kind.padEnd(15)} ${e.outcome.padEnd(13)} ${e.reason ?? ''} ${e.subject ?? e.details.source ?? ''} ${e.batchId ?? ''}`,
              );
          }
          process.exitCode = EXIT.ok;
        } catch (err) {
          process.exitCode = reportError(err, json);
        } finally {
          await log.close();
        }
      },
    );
  audit
    .command('export')
    .argument('<flow>', 'flow file')
    .description('the audit trail as FHIR R4 AuditEvent NDJSON on stdout')
    .action(async (file: string) => {
      const flow = loadFlowOrReport(file, false, { offline: true });
      if (typeof flow === 'number') {
        process.exitCode = flow;
        return;
      }
      const log = await openFlowAudit(flow, { readOnly: true });
      try {
        for await (const line of log.exportFhir({ flow: flow.file.flow })) process.stdout.write(line);
      } finally {
        await log.close();
      }
    });

  program
    .command('explain')
    .argument('<flow>', 'flow file')
    .argument('<record>', 'Type/id of a source record (Patient ids become their pseudonym), or a pseudonym')
    .option('--json', 'as one JSON line')
    .description(
      'the lineage of a record: what the CRM holds for it, which batches carried it, every audit entry',
    )
    .action(async (file: string, record: string, options: JsonOption) => {
      const json = options.json === true;
      const code = await withState(file, json, async (flow, store) => {
        const ref = ledgerRefOf(flow, record);
        const ledger = await store.ledgerBySource(flow.file.flow, ref);
        const log = await openFlowAudit(flow, { readOnly: true });
        try {
          // Every page of the trail, not the first: a record sent long ago has its entries far back.
          const bySubject = /^p[a-z2-7]{32}$/.test(ref)
            ? await collect(log.entries({ flow: flow.file.flow, subject: ref }))
            : [];
          const batchIds = [
            ...new Set(bySubject.map((e) => e.batchId).filter((b): b is string => b !== undefined)),
          ];
          const bySource = /^p/.test(ref)
            ? []
            : await collect(log.entries({ flow: flow.file.flow, source: ref }));
          const entries = [...bySubject, ...bySource];
          const quarantined = await store.listQuarantine({
            flow: flow.file.flow,
            sourceRef: record,
            limit: Number.MAX_SAFE_INTEGER,
          });
          const provenance = await store.provenanceOf(flow.file.flow, ref);
          // A removal the CRM refused keeps the record there: said beside the record it concerns.
          const refused = new Map(
            (await store.listRefusedRemovals(flow.file.flow, { sourceRef: ref })).map((r) => [
              `${r.object}\u0000${r.externalId}`,
              r,
            ]),
          );
          const lineage = {
            record: ref === record ? record : `${record} (pseudonym ${ref})`,
            provenance,
            target: ledger.map((l) => {
              const r = refused.get(`${l.object}\u0000${l.externalId}`);
              return {
                object: l.object,
                externalId: l.externalId,
                targetId: l.targetId,
                mappingVersion: l.mappingVersion,
                deliveredAt: l.deliveredAt,
                runId: l.runId,
                ...(r
                  ? {
                      removalRefused: {
                        cause: r.cause,
                        ...(r.because === undefined ? {} : { because: r.because }),
                        codes: r.codes,
                        since: r.firstRefusedAt,
                        attempts: r.attempts,
                      },
                    }
                  : {}),
              };
            }),
            batches: [
              ...new Set([...batchIds, ...bySource.map((e) => e.batchId).filter((b): b is string => !!b)]),
            ],
            audit: entries.map((e) => ({
              seq: e.seq,
              at: e.at,
              kind: e.kind,
              outcome: e.outcome,
              reason: e.reason,
              batchId: e.batchId,
              details: e.details,
            })),
            quarantine: quarantined.map((q) => ({
              id: q.id,
              code: q.code,
              stage: q.stage,
              status: q.status,
            })),
          };
          if (json) printJson(lineage);
          else printLine(JSON.stringify(lineage, null, 2));
          return EXIT.ok;
        } finally {
          await log.close();
        }
      });
      process.exitCode = code;
    });
}

/** Which open entries a release or discard acts on, besides one named by its id. */
interface Selection {
  readonly code?: string;
  readonly stream?: string;
  readonly all?: boolean;
}

/** The entries an id or a selection names (an id: that entry, whatever its status). */
async function selectEntries(
  store: StateStore,
  flow: string,
  id: string | undefined,
  selection: Selection,
): Promise<QuarantineEntry[]> {
  const selects = selection.all === true || selection.code !== undefined || selection.stream !== undefined;
  if ((id === undefined) === !selects) {
    throw new SluiceError(
      'CFG_ARGUMENTS_INVALID',
      id === undefined
        ? 'Name a quarantine entry id, or select entries with --code, --stream or --all.'
        : 'Name either one quarantine entry id or a selection (--code, --stream, --all), not both.',
    );
  }
  if (id !== undefined) {
    const entry = await store.getQuarantine(id);
    if (entry?.flow !== flow)
      throw new SluiceError('QUARANTINE_NOT_FOUND', `No quarantine entry ${id} in this flow's state.`);
    return [entry];
  }
  return store.listQuarantine({
    flow,
    status: 'open',
    ...(selection.code === undefined ? {} : { code: selection.code }),
    ...(selection.stream === undefined ? {} : { stream: selection.stream }),
    limit: Number.MAX_SAFE_INTEGER,
  });
}

async function release(
  file: string,
  id: string | undefined,
  selection: Selection,
  json: boolean,
): Promise<number> {
  const flow = loadFlowOrReport(file, json);
  if (typeof flow === 'number') return flow;
  const runtime = await buildFlowRuntime(flow);
  try {
    const entries = await selectEntries(runtime.store, flow.file.flow, id, selection);
    const { outcomes, run } = await releaseQuarantined(flow, runtime, entries, createLogger());
    if (id !== undefined) return reportOne(outcomes[0] as ReleaseOutcome, run, json);
    for (const o of outcomes) {
      if (json) printJson(o);
      else printLine(`${o.id}  ${o.outcome}${describeOutcome(o)}`);
    }
    const count = (kind: ReleaseOutcome['outcome']) => outcomes.filter((o) => o.outcome === kind).length;
    const totals = {
      selected: outcomes.length,
      released: count('released'),
      requarantined: outcomes.filter((o) => o.outcome === 'released' && o.requarantined).length,
      stillFailing: count('still-failing'),
      superseded: count('superseded'),
      runFailed: count('run-failed'),
      ...(run
        ? { runId: run.runId, status: run.status, delivered: run.delivered, withheld: run.withheld }
        : {}),
    };
    if (json) printJson(totals);
    else
      printLine(
        `${totals.selected} selected: ${totals.released} released (${totals.requarantined} held back again), ${totals.stillFailing} still failing, ${totals.superseded} superseded, ${totals.runFailed} in a run that failed${run ? `; run ${run.runId} ${run.status}` : ''}`,
      );
    return totals.released - totals.requarantined === totals.selected ? EXIT.ok : EXIT.failed;
  } catch (err) {
    return reportError(err, json);
  } finally {
    await runtime.close();
  }
}

/** One named entry: its outcome as before selections existed (an error for what cannot be released). */
function reportOne(o: ReleaseOutcome, run: RunSummary | undefined, json: boolean): number {
  if (o.outcome === 'not-open')
    throw new SluiceError('QUARANTINE_NOT_FOUND', `No open quarantine entry ${o.id} in this flow's state.`);
  if (o.outcome === 'superseded') {
    throw new SluiceError(
      'QUARANTINE_SUPERSEDED',
      `Quarantine entry ${o.id} holds an older version of its record than the one processed since (${o.processed}).`,
      { details: { quarantineId: o.id, processed: o.processed } },
    );
  }
  if (o.outcome === 'still-failing') {
    if (json) printJson({ id: o.id, released: false, code: o.code, issues: o.issues });
    else {
      printLine(`${o.id} still fails: ${o.code}`);
      for (const i of o.issues) printLine(`  ${i.severity} ${i.code} ${i.path || '(record)'}: ${i.message}`);
    }
    return EXIT.failed;
  }
  const summary = run as RunSummary;
  const released = o.outcome === 'released';
  const result = {
    id: o.id,
    released,
    status: summary.status,
    delivered: summary.delivered,
    withheld: summary.withheld,
    quarantined: summary.quarantined,
    runId: summary.runId,
    ...(o.outcome === 'released' && o.requarantined ? { requarantinedAs: o.requarantined } : {}),
  };
  if (json) printJson(result);
  else
    printLine(
      `${o.id} ${released ? 'released' : 'stays open'}: run ${summary.runId} ${summary.status}, delivered ${summary.delivered}, withheld ${summary.withheld}, quarantined again ${summary.quarantined}`,
    );
  return summary.status === 'succeeded' && summary.quarantined === 0 ? EXIT.ok : EXIT.failed;
}

function describeOutcome(o: ReleaseOutcome): string {
  switch (o.outcome) {
    case 'released':
      return o.requarantined ? ` (held back again as ${o.requarantined})` : '';
    case 'still-failing':
      return ` ${o.code}`;
    case 'superseded':
      return ` (a newer version was ${o.processed})`;
    default:
      return '';
  }
}

async function discard(
  file: string,
  id: string | undefined,
  selection: Selection,
  reason: string,
  json: boolean,
): Promise<number> {
  const flow = loadFlowOrReport(file, json);
  if (typeof flow === 'number') return flow;
  const badReason = invalidReasonCode(reason);
  if (badReason) return reportError(badReason, json);
  const runtime = await buildFlowRuntime(flow);
  try {
    const entries = await selectEntries(runtime.store, flow.file.flow, id, selection);
    let discarded = 0;
    for (const entry of entries) {
      if (entry.status !== 'open' || !(await runtime.store.setQuarantineStatus(entry.id, 'discarded'))) {
        if (id !== undefined)
          throw new SluiceError(
            'QUARANTINE_NOT_FOUND',
            `No open quarantine entry ${entry.id} in this flow's state.`,
          );
        continue;
      }
      discarded++;
      await runtime.audit.append([
        {
          kind: 'discard',
          flow: flow.file.flow,
          outcome: 'success',
          reason,
          details: {
            quarantineId: entry.id,
            ...(entry.payloadSha256 ? { recordSha256: entry.payloadSha256 } : {}),
          },
        },
      ]);
      if (json) printJson({ id: entry.id, discarded: true, reason });
      else
        printLine(
          `${entry.id} discarded (${reason}); its record is erased, the discard is in the audit trail`,
        );
    }
    if (id === undefined) {
      if (json) printJson({ selected: entries.length, discarded, reason });
      else printLine(`${entries.length} selected, ${discarded} discarded (${reason})`);
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    await runtime.close();
  }
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
