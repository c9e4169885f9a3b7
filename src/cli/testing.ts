import { Command } from 'commander';
import { vi } from 'vitest';

/** What a command printed and the exit code it set. */
export interface CliResult {
  readonly code: number;
  /** Non-empty stdout lines. */
  readonly stdout: string[];
  readonly stderr: string;
}

/**
 * Runs one `sluice` command in-process on a fresh commander program (registered by `register`), with
 * `env` added to the environment for the call, capturing stdout and stderr.
 */
export async function runCommand(
  register: (program: Command) => void,
  argv: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out.push(String(chunk));
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    err.push(String(chunk));
    return true;
  });
  process.exitCode = 0;
  try {
    const program = new Command().exitOverride();
    register(program);
    await program.parseAsync(['node', 'sluice', ...argv]);
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.env = saved;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return {
    code,
    stdout: out
      .join('')
      .split('\n')
      .filter((l) => l !== ''),
    stderr: err.join(''),
  };
}
