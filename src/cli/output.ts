import { isSluiceError, toSluiceError } from '../core/errors/index.ts';

/** Exit codes of the CLI: stable, documented in the README. */
export const EXIT = {
  ok: 0,
  /** The work ran but failed (a run that stopped, records with errors in `validate`). */
  failed: 1,
  /** The configuration or the command line is wrong; nothing ran. */
  usage: 2,
} as const;

/** Writes one JSON value as a single line on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function printLine(text = ''): void {
  process.stdout.write(`${text}\n`);
}

/**
 * Reports an error the way operators read it: code, message, and what to do. With `json`, the last
 * stdout line is `{"error": {...}}` for machines. Never prints a stack unless SLUICE_DEBUG is set.
 */
export function reportError(err: unknown, json: boolean): number {
  const e = toSluiceError(err);
  if (json) printJson({ error: e.toJSON() });
  process.stderr.write(`error ${e.code}: ${e.message}\n  what to do: ${e.action}\n`);
  if (process.env.SLUICE_DEBUG && e.cause instanceof Error) process.stderr.write(`${e.cause.stack}\n`);
  const configError =
    isSluiceError(err) && (err.code.startsWith('CFG_') || err.code === 'STATE_DEFINITION_CHANGED');
  return configError ? EXIT.usage : EXIT.failed;
}
