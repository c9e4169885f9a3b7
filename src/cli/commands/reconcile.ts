import type { Command } from 'commander';
import { SluiceError } from '../../core/errors/index.ts';
import { loadFlow } from '../../engine/config/load-flow.ts';
import {
  type ReconcileFinding,
  type ReconcileReport,
  reconcileFlow,
} from '../../engine/reconcile/reconcile.ts';
import { type RepairOutcome, repairMissing } from '../../engine/reconcile/repair.ts';
import { buildFlowRuntime, flowRunOptions } from '../../engine/runtime/build-flow.ts';
import { eitherSignal, withFlowLease } from '../../engine/runtime/flow-lease.ts';
import { createLogger } from '../../engine/runtime/logger.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';
import { terminalProgress } from '../progress-bar.ts';

const MISSING_ACTION =
  'Deleted or merged away in the CRM after Sluice delivered them: `sluice reconcile --repair` reads their source records again and sends them through the whole pipeline (consent and policy checked anew); otherwise take them out of the flow (a withhold rule).';
const CHANGED_ACTION =
  "Edited in the CRM after Sluice's last write: the next change of the source record overwrites the fields Sluice sends; a field the CRM must own should leave the allowlist.";

/**
 * `sluice reconcile`: the flow's delivery ledger against the CRM — what is missing there and what was
 * changed there since Sluice wrote it. Reads only, unless `--repair` sends the missing ones again.
 */
export function registerReconcile(program: Command): void {
  program
    .command('reconcile')
    .description(
      'compare what the flow delivered (its ledger) with what the CRM holds now: missing and changed records',
    )
    .argument('<flow>', 'flow file')
    .option('--sample <n>', 'how many missing and changed records to list', '20')
    .option(
      '--tolerance-seconds <s>',
      "a CRM modification this soon after Sluice's write is that write",
      '60',
    )
    .option(
      '--repair',
      'read the source records of missing ones again and send them through the pipeline (re-sent, checked anew)',
    )
    .option('--json', 'the report as one JSON line')
    .action(
      async (
        file: string,
        options: { sample: string; toleranceSeconds: string; repair?: boolean; json?: boolean },
      ) => {
        const json = options.json === true;
        const sample = Number(options.sample);
        const toleranceSeconds = Number(options.toleranceSeconds);
        try {
          if (
            !Number.isInteger(sample) ||
            sample < 0 ||
            !Number.isFinite(toleranceSeconds) ||
            toleranceSeconds < 0
          ) {
            throw new SluiceError(
              'CFG_ARGUMENTS_INVALID',
              '--sample is a whole number from 0; --tolerance-seconds a number of seconds from 0.',
            );
          }
          const flow = loadFlow(file);
          const runtime = await buildFlowRuntime(flow);
          const controller = new AbortController();
          const stop = (): void => controller.abort();
          process.once('SIGINT', stop);
          try {
            const missing: ReconcileFinding[] = [];
            const report = await reconcileFlow({
              flow: flow.file.flow,
              store: runtime.store,
              target: runtime.target,
              signal: controller.signal,
              sample,
              toleranceSeconds,
              ...(json ? {} : { progress: terminalProgress() }),
              ...(options.repair ? { onMissing: (f: ReconcileFinding) => missing.push(f) } : {}),
            });
            let repair: RepairOutcome | undefined;
            if (options.repair && missing.length > 0) {
              // A flow reading bulk exports reads single records through its search source.
              const fetcher = runtime.source.fetch ? runtime.source : runtime.consentSource;
              const fetch = fetcher.fetch;
              if (fetch === undefined) {
                throw new SluiceError(
                  'CFG_FLOW_INVALID',
                  "This flow's source cannot read records by id, which --repair needs.",
                );
              }
              repair = await withFlowLease(runtime, flow.file.flow, (leaseSignal) =>
                repairMissing({
                  missing,
                  fetcher: { fetch: fetch.bind(fetcher) },
                  runOptions: flowRunOptions(flow, runtime),
                  store: runtime.store,
                  logger: createLogger(),
                  signal: eitherSignal(controller.signal, leaseSignal) ?? controller.signal,
                }),
              );
            }
            if (json)
              printJson({
                ...report,
                ...(report.missing.length > 0 && !repair ? { missingAction: MISSING_ACTION } : {}),
                ...(report.changed.length > 0 ? { changedAction: CHANGED_ACTION } : {}),
                ...(repair ? { repair } : {}),
              });
            else {
              printReport(report, repair === undefined);
              if (repair) printRepair(repair);
            }
            process.exitCode = repair?.run?.status === 'failed' ? EXIT.failed : EXIT.ok;
          } finally {
            process.off('SIGINT', stop);
            await runtime.close();
          }
        } catch (err) {
          process.exitCode = reportError(err, json);
        }
      },
    );
}

function printRepair(r: RepairOutcome): void {
  const run = r.run;
  printLine(
    `repair: ${r.refetched} source record${r.refetched === 1 ? '' : 's'} read again and sent through the pipeline${run ? ` (run ${run.runId}: ${run.status}; delivered ${run.delivered}, withheld ${run.withheld}, quarantined ${run.quarantined})` : ''}`,
  );
  if (r.goneAtSource > 0)
    printLine(`  ${r.goneAtSource} no longer at the source either: their ledger rows were forgotten`);
  if (r.unresolved > 0)
    printLine(`  ${r.unresolved} could not be traced to a source record this flow reads (left as they are)`);
  if (run?.error)
    printLine(`  error ${run.error.code}: ${run.error.message}\n  what to do: ${run.error.action}`);
}

function printReport(r: ReconcileReport, withAction = true): void {
  const missing = Object.values(r.objects).reduce((n, o) => n + o.missing, 0);
  const changed = Object.values(r.objects).reduce((n, o) => n + o.changed, 0);
  printLine(
    `flow ${r.flow}: ${r.checked} delivered record${r.checked === 1 ? '' : 's'} checked against the CRM at ${r.checkedAt}: ${r.clean ? 'all as written' : `${missing} missing, ${changed} changed there since`}`,
  );
  for (const [object, o] of Object.entries(r.objects)) {
    printLine(
      `  ${object.padEnd(20)} checked ${o.checked}, as written ${o.asWritten}, missing ${o.missing}, changed ${o.changed}`,
    );
  }
  if (r.missing.length > 0) {
    printLine(`missing at the CRM${missing > r.missing.length ? ` (the first ${r.missing.length})` : ''}:`);
    for (const f of r.missing)
      printLine(`  ${f.object} ${f.targetId} (${f.sourceRef}), delivered ${f.deliveredAt}`);
    if (withAction) printLine(`  what to do: ${MISSING_ACTION}`);
  }
  if (r.changed.length > 0) {
    printLine(`changed at the CRM${changed > r.changed.length ? ` (the first ${r.changed.length})` : ''}:`);
    for (const f of r.changed)
      printLine(
        `  ${f.object} ${f.targetId} (${f.sourceRef}), delivered ${f.deliveredAt}, modified ${f.lastModified}`,
      );
    printLine(`  what to do: ${CHANGED_ACTION}`);
  }
}
