import { Command } from 'commander';
import { registerAnonymize } from './commands/anonymize.ts';
import { registerConsent } from './commands/consent.ts';
import { registerDemo } from './commands/demo.ts';
import { registerFlow } from './commands/flow-check.ts';
import { registerHalt } from './commands/halt.ts';
import { registerIngest } from './commands/ingest.ts';
import { registerInspect } from './commands/inspect.ts';
import { registerMapping } from './commands/mapping.ts';
import { registerPlan } from './commands/plan.ts';
import { registerReconcile } from './commands/reconcile.ts';
import { registerRisk } from './commands/risk.ts';
import { registerRun } from './commands/run.ts';
import { registerSandbox } from './commands/sandbox.ts';
import { registerStatus } from './commands/status.ts';
import { registerValidate } from './commands/validate.ts';
import { EXIT, reportError } from './output.ts';

// A reader that goes away (`sluice … --json | head -1`) ends the output, not the work: a run or a
// release carries on to its commit, and the exit code still says how it went.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
  });
}

const program = new Command()
  .name('sluice')
  .description('Sluice: a governed data plane for PHI between Veeva CRM and an Epic FHIR R4 EHR')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride((err) => {
    // Help and version are not errors; everything else from the parser is a usage error.
    process.exit(
      err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage,
    );
  });

registerRun(program);
registerIngest(program);
registerDemo(program);
registerSandbox(program);
registerFlow(program);
registerInspect(program);
registerConsent(program);
registerValidate(program);
registerAnonymize(program);
registerRisk(program);
registerPlan(program);
registerReconcile(program);
registerMapping(program);
registerStatus(program);
registerHalt(program);

// A command that fails before it can report for itself (e.g. the state store is unreachable) still
// ends with the error's code and what to do, never a stack trace.
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = reportError(err, process.argv.includes('--json'));
}
