import type { Command } from 'commander';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import { SluiceError } from '../../core/errors/index.ts';
import { ConsentGate } from '../../engine/consent/consent-gate.ts';
import { openFlowState } from '../../engine/runtime/build-flow.ts';
import { loadFlowOrReport } from '../load-flow-or-report.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';

interface ExplainOptions {
  purpose?: string;
  recipient?: string;
  role?: string;
  type: string;
  at?: string;
  json?: boolean;
}

export function registerConsent(program: Command): void {
  const consent = program.command('consent').description('consent directives as a flow sees them');
  consent
    .command('explain')
    .description(
      'why a person’s data may or may not go to a recipient for a purpose: the deciding consent and provision',
    )
    .argument('<flow>', 'flow file')
    .argument('<person>', 'Patient/ID (turned into its pseudonym) or a pseudonym')
    .option('--purpose <code>', "purpose of use (default: the flow's)")
    .option('--recipient <ref>', "recipient reference (default: the flow's consent recipient)")
    .option('--role <code>', "recipient role (default: the flow's)")
    .option('--type <resourceType>', 'the kind of data', 'Patient')
    .option('--at <instant>', 'decide as of this instant (default: now)')
    .option('--json', 'the decision as one JSON line')
    .action(async (file: string, person: string, options: ExplainOptions) => {
      process.exitCode = await explain(file, person, options);
    });
}

async function explain(file: string, person: string, options: ExplainOptions): Promise<number> {
  const json = options.json === true;
  const flow = loadFlowOrReport(file, json);
  if (typeof flow === 'number') return flow;
  const settings = flow.file.stages.consent;
  if (!settings) {
    return reportError(
      new SluiceError('CFG_FLOW_INVALID', `Flow ${flow.file.flow} has no consent stage (stages.consent).`),
      json,
    );
  }
  const match = /^Patient\/([A-Za-z0-9\-.]{1,256})$/.exec(person);
  const subject = match
    ? pseudonymize(flow.pseudonymKey, flow.file.source.system, 'Patient', match[1] as string)
    : person;
  const gate = new ConsentGate(
    {
      purpose: options.purpose ?? flow.file.purpose,
      recipient: {
        id: options.recipient ?? settings.recipient.id,
        role: options.role ?? settings.recipient.role,
      },
      policyVersion: settings.policyVersion,
      defaultDecision: settings.defaultDecision,
      refreshMs: 0,
    },
    flow.file.source.system,
    flow.pseudonymKey,
  );
  const store = await openFlowState(flow);
  try {
    const loaded = await gate.load(store, flow.file.flow);
    const at = options.at ? new Date(options.at) : new Date();
    if (Number.isNaN(at.getTime()))
      throw new SluiceError('CFG_FLOW_INVALID', '--at is not an ISO 8601 instant.');
    const decision = gate.check(subject, options.type, at);
    const out = {
      subject,
      purpose: gate.settings.purpose,
      recipient: gate.settings.recipient,
      at: at.toISOString(),
      consentsKnown: loaded,
      ...decision,
    };
    if (json) printJson(out);
    else {
      printLine(
        `${decision.decision.toUpperCase()} for ${subject} (${options.type}, ${out.purpose}, ${out.recipient.id} as ${out.recipient.role})`,
      );
      printLine(
        `  decided by: ${decision.basis.rule}${decision.basis.consentRef ? ` ${decision.basis.consentRef}` : ''}${decision.basis.provisionPath ? ` at ${decision.basis.provisionPath}` : ''}`,
      );
      printLine(`  why: ${decision.basis.reason}`);
      printLine(`  policy: ${decision.policyVersion}; consents looked at: ${decision.basis.considered}`);
      for (const s of decision.basis.skipped) printLine(`  skipped ${s.consentRef}: ${s.why}`);
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    await store.close();
  }
}
