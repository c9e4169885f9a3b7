import type { Command } from 'commander';
import { isSluiceError, SluiceError } from '../../core/errors/index.ts';
import { referenceRows } from '../../engine/config/flow-reference.ts';
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
  flow
    .command('keys')
    .description('every key a flow file may set, with its type, default and meaning (docs/flow-file.md)')
    .argument('[prefix]', 'only keys under this dotted prefix (e.g. source.bulk, stages.consent)')
    .option('--json', 'one JSON line per key')
    .action((prefix: string | undefined, options: { json?: boolean }) => {
      const rows = referenceRows().filter(
        (r) =>
          prefix === undefined ||
          r.key === prefix ||
          r.key.startsWith(`${prefix}.`) ||
          r.key.startsWith(`${prefix}[`),
      );
      if (rows.length === 0) {
        process.exitCode = reportError(
          new SluiceError('CFG_ARGUMENTS_INVALID', `No flow file key starts with ${prefix}.`),
          options.json === true,
        );
        return;
      }
      for (const r of rows) {
        if (options.json) printJson(r);
        else {
          printLine(`${r.key}  ${r.type}  ${r.presence}${r.when ? `  (when ${r.when})` : ''}`);
          printLine(`    ${r.description}`);
        }
      }
      process.exitCode = EXIT.ok;
    });
}
