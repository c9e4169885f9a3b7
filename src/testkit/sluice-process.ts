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

/** One line of `--json` output, parsed; undefined for anything else (a log line, a partial line). */
export function parseJsonLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** A `sluice` process left running (e.g. `run` in loop mode): its output as it comes, and a way to stop it. */
export interface RunningSluice {
  /** Complete stdout lines so far. */
  readonly lines: string[];
  stderr(): string;
  /** Resolves once `check` holds (polled); rejects after a minute, naming `what`. */
  until(check: () => boolean, what: string): Promise<void>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  /** The process id (what another process's message names). */
  readonly pid: number | undefined;
  /** Sends a signal (e.g. SIGKILL: a machine that dies), then resolves with the exit code (null when killed). */
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

/** Starts `sluice ARGS…` as its own process (as `runSluice` does) without waiting for it to end. */
export function startSluice(args: readonly string[], env: Record<string, string> = {}): RunningSluice {
  const child = spawn(process.execPath, [SLUICE_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    lines,
    stderr: () => stderr,
    async until(check, what) {
      const deadline = Date.now() + 60_000;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${stderr.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
    pid: child.pid,
    async kill(signal) {
      child.kill(signal);
      return exited;
    },
  };
}
