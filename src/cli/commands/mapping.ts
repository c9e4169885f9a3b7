import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { SluiceError } from '../../core/errors/sluice-error.ts';
import { DEFAULT_MATRIX_DIR, loadMatrix } from '../../core/matrix/load.ts';
import { renderMatrixMarkdown } from '../../core/matrix/render.ts';
import { EXIT, printLine, reportError } from '../output.ts';

/** docs/mapping-matrix.md of this checkout. */
export const DEFAULT_MATRIX_DOC = resolve(DEFAULT_MATRIX_DIR, '..', '..', 'docs', 'mapping-matrix.md');

interface DocsOptions {
  check?: boolean;
  dir: string;
  out: string;
}

export function registerMapping(program: Command): void {
  const mapping = program.command('mapping').description('the mapping matrix (config/mappings)');
  mapping
    .command('docs')
    .description(
      'render the mapping matrix as Markdown for reviewers; --check fails when the rendering is stale',
    )
    .option('--check', 'exit 1 when the committed rendering differs from the matrix (CI)')
    .option('--dir <dir>', 'the matrix directory', DEFAULT_MATRIX_DIR)
    .option('--out <file>', 'the rendered document', DEFAULT_MATRIX_DOC)
    .action((options: DocsOptions) => {
      process.exitCode = mappingDocs(options);
    });
}

/** Renders (or checks) the matrix document; returns the exit code. */
export function mappingDocs(options: DocsOptions): number {
  let text: string;
  try {
    text = renderMatrixMarkdown(loadMatrix(options.dir));
  } catch (err) {
    // An invalid matrix is a configuration problem: every error with its key is in the message.
    reportError(err, false);
    return EXIT.usage;
  }
  if (options.check === true) {
    let current: string | undefined;
    try {
      current = readFileSync(options.out, 'utf8');
    } catch {
      current = undefined;
    }
    if (current !== text) {
      return reportError(new SluiceError('MATRIX_DOCS_STALE', `${options.out} is stale or missing.`), false);
    }
    printLine(`${options.out} is current`);
    return EXIT.ok;
  }
  writeFileSync(options.out, text);
  printLine(`wrote ${join(options.out)}`);
  return EXIT.ok;
}
