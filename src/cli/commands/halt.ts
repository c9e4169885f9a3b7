import { userInfo } from 'node:os';
import type { Command } from 'commander';
import type { ResolvedFlow } from '../../engine/config/load-flow.ts';
import { openFlowAudit, openFlowState } from '../../engine/runtime/build-flow.ts';
import { loadFlowOrReport } from '../load-flow-or-report.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';
import { invalidReasonCode } from '../reason-code.ts';

/**
 * The kill switch of a flow: `sluice halt` stops everything the flow sends — a running `sluice run`
 * (loop or once) sends nothing after its current request, new runs send nothing — until `sluice resume`.
 * Nothing is lost: records read and not sent stay behind their checkpoints. Both are audited (who, why).
 * The switch lives in the flow's state, so it reaches every process that runs the flow on this state.
 */
export function registerHalt(program: Command): void {
  program
    .command('halt')
    .description("engage a flow's kill switch: nothing more of it is sent until `sluice resume` (audited)")
    .argument('<flow>', 'flow file')
    .requiredOption(
      '--reason <code>',
      'why, as a short code (e.g. suspected-leak, mapping-error, target-outage)',
    )
    .option('--json', 'as one JSON line')
    .action(async (file: string, options: { reason: string; json?: boolean }) => {
      process.exitCode = await toggle(file, 'engage', options.reason, options.json === true);
    });
  program
    .command('resume')
    .description("release a flow's kill switch: the next run sends what the halt held back (audited)")
    .argument('<flow>', 'flow file')
    .requiredOption('--reason <code>', 'why it is safe again, as a short code (e.g. fixed, false-alarm)')
    .option('--json', 'as one JSON line')
    .action(async (file: string, options: { reason: string; json?: boolean }) => {
      process.exitCode = await toggle(file, 'release', options.reason, options.json === true);
    });
}

async function toggle(
  file: string,
  action: 'engage' | 'release',
  reason: string,
  json: boolean,
): Promise<number> {
  // Only the state and the audit trail are touched: neither the source nor the target is contacted.
  const flow = loadFlowOrReport(file, json, { offline: true });
  if (typeof flow === 'number') return flow;
  const badReason = invalidReasonCode(reason);
  if (badReason) return reportError(badReason, json);
  const name = flow.file.flow;
  const store = await openFlowState(flow);
  try {
    const current = await store.getHalt(name);
    if (action === 'engage' && current !== undefined) {
      report(
        json,
        { flow: name, halted: true, changed: false, ...current },
        `flow ${name} is already halted since ${current.engagedAt} (${current.reason})`,
      );
      return EXIT.ok;
    }
    if (action === 'release' && current === undefined) {
      report(json, { flow: name, halted: false, changed: false }, `flow ${name} is not halted`);
      return EXIT.ok;
    }
    const audit = await openFlowAudit(flow);
    try {
      const entry = auditEntry(flow, action, reason);
      if (action === 'engage') {
        // The safe direction first: the switch holds even if the audit append then fails.
        const engagedAt = new Date().toISOString();
        await store.setHalt(name, { reason, engagedAt });
        await audit.append([entry]);
        report(
          json,
          { flow: name, halted: true, changed: true, reason, engagedAt },
          `flow ${name} halted (${reason}): nothing more of it is sent until \`sluice resume\``,
        );
      } else {
        // Recorded before it takes effect: no release without its audit entry.
        await audit.append([entry]);
        await store.setHalt(name, undefined);
        report(
          json,
          { flow: name, halted: false, changed: true, reason, was: current },
          `flow ${name} resumed (${reason}); it was halted since ${current?.engagedAt} (${current?.reason})`,
        );
      }
      return EXIT.ok;
    } finally {
      await audit.close();
    }
  } catch (err) {
    return reportError(err, json);
  } finally {
    await store.close();
  }
}

function auditEntry(flow: ResolvedFlow, action: 'engage' | 'release', reason: string) {
  let by = 'unknown';
  try {
    by = userInfo().username || by;
  } catch {
    // No user database entry (a container): the audit says so.
  }
  return {
    kind: 'kill-switch' as const,
    flow: flow.file.flow,
    outcome: 'success' as const,
    reason,
    details: { action, by: by.slice(0, 64) },
  };
}

function report(json: boolean, value: Record<string, unknown>, text: string): void {
  if (json) printJson(value);
  else printLine(text);
}
