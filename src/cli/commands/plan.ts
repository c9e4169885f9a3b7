import type { Command } from 'commander';
import { loadFlow, type ResolvedFlow } from '../../engine/config/load-flow.ts';
import { diffPlans, type FlowPlan, planFlow } from '../../engine/pipeline/plan.ts';
import { buildFlowRuntime } from '../../engine/runtime/build-flow.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';

async function planOf(file: string): Promise<FlowPlan> {
  const flow: ResolvedFlow = loadFlow(file);
  const runtime = await buildFlowRuntime(flow);
  try {
    return await planFlow(flow, runtime, new AbortController().signal);
  } finally {
    await runtime.close();
  }
}

export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description(
      'dry run: what would cross the boundary, per resource type, object and field, and what would be withheld or quarantined and why',
    )
    .argument('<flow>', 'flow file')
    .option('--diff <flow>', 'compare with another version of the flow (e.g. the one live now)')
    .option('--json', 'the plan (or the diff) as one JSON line')
    .action(async (file: string, options: { diff?: string; json?: boolean }) => {
      const json = options.json === true;
      try {
        const plan = await planOf(file);
        if (options.diff) {
          const diff = diffPlans(await planOf(options.diff), plan);
          if (json) printJson({ plan, diff });
          else {
            printLine(`plan of ${plan.flow} against ${options.diff}:`);
            for (const f of diff.fieldsAdded) printLine(`  + ${f} would start crossing`);
            for (const f of diff.fieldsRemoved) printLine(`  - ${f} would stop crossing`);
            for (const c of diff.counts) printLine(`  ~ ${c.key}: ${c.before} → ${c.after}`);
            if (diff.fieldsAdded.length + diff.fieldsRemoved.length + diff.counts.length === 0)
              printLine('  no difference');
          }
        } else if (json) printJson(plan);
        else {
          printLine(
            `flow ${plan.flow} (${plan.definitionHash.slice(0, 12)}): purpose ${plan.purpose}, recipient ${plan.recipient}, consent policy ${plan.consentPolicy ?? `none${plan.withoutConsent ? ` (without consent: ${plan.withoutConsent})` : ''}`}`,
          );
          for (const [stream, s] of Object.entries(plan.streams)) {
            const withheld = Object.entries(s.withheld)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ');
            const quarantined = Object.entries(s.quarantined)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ');
            const retract = Object.entries(s.wouldRetract)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ');
            const suppress = Object.entries(s.wouldSuppress)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ');
            printLine(
              `  ${stream.padEnd(14)} read ${s.read}, would send ${s.wouldSend}${withheld ? `, withheld: ${withheld}` : ''}${quarantined ? `, quarantined: ${quarantined}` : ''}${retract ? `, would remove what earlier runs delivered: ${retract}` : ''}${suppress ? `, consent no longer permits what earlier runs delivered: ${suppress}` : ''}`,
            );
          }
          if (plan.refusedRemovals)
            printLine(
              `  removals the CRM refused earlier, tried again by the run: ${plan.refusedRemovals} (\`sluice status\` lists them)`,
            );
          for (const [object, o] of Object.entries(plan.objects)) {
            printLine(
              `  ${object}: ${o.records} records; fields: ${Object.entries(o.fields)
                .map(([f, n]) => `${f} (${n})`)
                .join(', ')}`,
            );
          }
        }
        process.exitCode = EXIT.ok;
      } catch (err) {
        process.exitCode = reportError(err, json);
      }
    });
}
