import type { Command } from 'commander';
import { isSluiceError } from '../../core/errors/index.ts';
import { loadFlow } from '../../engine/config/load-flow.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';

export function registerFlow(program: Command): void {
  const flow = program.command('flow').description('work with flow files');
  flow
    .command('check')
    .description('validate a flow file (schema, ${ENV} references, keys, FHIRPath) without running it')
    .argument('<flow>', 'flow file (YAML)')
    .option('--json', 'print the result as one JSON line')
    .action((file: string, options: { json?: boolean }) => {
      try {
        const resolved = loadFlow(file);
        if (options.json)
          printJson({ ok: true, flow: resolved.file.flow, definitionHash: resolved.definitionHash });
        else printLine(`${file}: flow ${resolved.file.flow} is valid`);
        process.exitCode = EXIT.ok;
      } catch (err) {
        if (options.json && isSluiceError(err) && err.code === 'CFG_FLOW_INVALID') {
          printJson({ ok: false, error: err.toJSON() });
          process.stderr.write(`${err.message}\n`);
          process.exitCode = EXIT.usage;
          return;
        }
        process.exitCode = reportError(err, options.json === true);
      }
    });
}
