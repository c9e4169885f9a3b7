import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  type FileItem,
  listResourceFiles,
  readResourceFile,
  resourcesFromJsonText,
  withoutBom,
} from '../../adapters/files/resource-files.ts';
import type { Issue } from '../../core/mapping/outcome.ts';
import { hasErrors, validateFast } from '../../core/validate/compiled/validate.ts';
import { EXIT, printJson, printLine } from '../output.ts';

interface ValidateOptions {
  json?: boolean;
  allowLongIds?: boolean;
}

interface Finding {
  readonly file: string;
  readonly line?: number;
  readonly entry?: number;
  readonly resource?: string;
  readonly issues: readonly Issue[];
}

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description(
      'validate FHIR R4 JSON, Bundles and NDJSON (and .gz) with the checks the pipeline uses; exits 1 on any error',
    )
    .argument('<files...>', 'files or folders; - reads stdin')
    .option('--json', 'one JSON line per resource with issues, then a summary line')
    .option('--allow-long-ids', 'accept ids over 64 characters (Epic) as a warning')
    .action(async (files: string[], options: ValidateOptions) => {
      process.exitCode = await validateCommand(files, options);
    });
}

async function* items(inputs: readonly string[]): AsyncGenerator<FileItem> {
  for (const input of inputs) {
    if (input === '-') {
      yield* stdinItems();
      continue;
    }
    try {
      await stat(input);
    } catch {
      yield { kind: 'error', message: 'no such file or folder', at: { file: input } };
      continue;
    }
    const files = await listResourceFiles([input]);
    if (files.length === 0)
      yield { kind: 'error', message: 'no FHIR files (.json, .ndjson, .gz) here', at: { file: input } };
    for (const file of files) yield* readResourceFile(file);
  }
}

async function* stdinItems(): AsyncGenerator<FileItem> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const text = withoutBom(Buffer.concat(chunks).toString('utf8'));
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  let whole = true;
  try {
    JSON.parse(text);
  } catch {
    whole = false;
  }
  if (whole || lines.length <= 1) {
    yield* resourcesFromJsonText(text, { file: '<stdin>' });
    return;
  }
  let n = 0;
  for (const line of text.split('\n')) {
    n++;
    if (line.trim() === '') continue;
    yield* resourcesFromJsonText(line, { file: '<stdin>', line: n });
  }
}

async function validateCommand(files: readonly string[], options: ValidateOptions): Promise<number> {
  let resources = 0;
  let errors = 0;
  let warnings = 0;
  let unreadable = 0;
  const report = (f: Finding): void => {
    if (options.json) {
      printJson(f);
      return;
    }
    const where = `${f.file}${f.line === undefined ? '' : `:${f.line}`}${f.entry === undefined ? '' : ` entry ${f.entry}`}`;
    for (const i of f.issues) {
      printLine(`${where} ${f.resource ?? ''} ${i.severity} ${i.code} ${i.path || '(root)'}: ${i.message}`);
    }
  };
  for await (const item of items(files)) {
    const at = item.at;
    if (item.kind === 'error') {
      unreadable++;
      errors++;
      report({
        file: at.file,
        ...(at.line === undefined ? {} : { line: at.line }),
        issues: [{ severity: 'error', code: 'REC_UNPARSEABLE', path: '', message: item.message }],
      });
      continue;
    }
    resources++;
    const issues = validateFast(item.resource, { allowLongIds: options.allowLongIds === true });
    if (issues.length === 0) continue;
    if (hasErrors(issues)) errors++;
    warnings += issues.filter((i) => i.severity === 'warning').length;
    const type = typeof item.resource.resourceType === 'string' ? item.resource.resourceType : '?';
    const id = typeof item.resource.id === 'string' ? `/${item.resource.id}` : '';
    report({
      file: at.file,
      ...(at.line === undefined ? {} : { line: at.line }),
      ...(at.entry === undefined ? {} : { entry: at.entry }),
      resource: `${type}${id}`,
      issues,
    });
  }
  const summary = { resources, invalid: errors, unreadable, warnings, ok: errors === 0 };
  if (options.json) printJson({ summary });
  else
    printLine(
      `${resources} resource(s) checked: ${errors} with errors (${unreadable} unreadable), ${warnings} warning(s)`,
    );
  return errors === 0 ? EXIT.ok : EXIT.failed;
}
