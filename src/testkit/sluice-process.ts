import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './data.ts';

/** The `sluice` executable of this checkout. */
export const SLUICE_BIN = join(REPO_ROOT, 'bin', 'sluice.js');

export interface SluiceProcessResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `sluice ARGS…` as its own process (from the repository root, the environment plus `env`) and
 * resolves with its exit code and everything it printed.
 */
export function runSluice(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<SluiceProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SLUICE_BIN, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The last stdout line as JSON (`--json` commands end with their result or `{ error }`). */
export function lastJson(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
}
