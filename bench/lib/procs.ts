/**
 * Child processes for the end-to-end benchmarks: the sandboxes and the pipeline each run in their own
 * process (`bin/sluice.js`), so the pipeline's peak memory and CPU time are its own and not the
 * sandboxes'. Linux `/proc` gives the sandboxes' figures; the pipeline reports its own through
 * bench/rss-probe.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../../src/testkit/data.ts';

export const SLUICE_BIN = join(REPO_ROOT, 'bin', 'sluice.js');
export const RSS_PROBE = join(REPO_ROOT, 'bench', 'rss-probe.ts');

/** Memory and CPU of a process so far, from /proc (undefined fields where /proc is missing). */
export interface ProcUsage {
  /** Peak resident set size (VmHWM), MiB. */
  readonly peakRssMb?: number;
  /** Current resident set size (VmRSS), MiB. */
  readonly rssMb?: number;
  /** User + system CPU seconds. */
  readonly cpuSec?: number;
}

export function procUsage(pid: number | undefined): ProcUsage {
  if (pid === undefined) return {};
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number | undefined => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) / 1024 : undefined;
    };
    // Fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name): utime and stime in ticks.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const out: { -readonly [K in keyof ProcUsage]: ProcUsage[K] } = { cpuSec: ticks / 100 };
    const peak = kb('VmHWM');
    const rss = kb('VmRSS');
    if (peak !== undefined) out.peakRssMb = Math.round(peak);
    if (rss !== undefined) out.rssMb = Math.round(rss);
    return out;
  } catch {
    return {};
  }
}

/**
 * Busy CPU seconds of the whole machine so far, all cores together (/proc/stat: user, nice, system, irq,
 * softirq, steal), or undefined without /proc. Counts what no child probe sees — a database or message
 * server on the same machine — and anything else running there too.
 */
export function machineCpuSec(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const [label, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/);
    if (label !== 'cpu') return undefined;
    const ticks = [user, nice, system, irq, softirq, steal].reduce((sum, v) => sum + Number(v ?? 0), 0);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}

export interface Service {
  readonly url: string;
  readonly pid: number | undefined;
  /** Time from spawn to the URL line (includes seeding for the EHR sandbox). */
  readonly startMs: number;
  usage(): ProcUsage;
  /** Undefined while running; else how it ended and the end of its stderr. */
  exitInfo(): string | undefined;
  stop(): Promise<void>;
}

/** The last lines a child wrote on stderr, for error messages (sandbox output carries no record content). */
function tail(lines: string[], text: string): void {
  lines.push(...text.split('\n').filter((l) => l.trim() !== ''));
  if (lines.length > 20) lines.splice(0, lines.length - 20);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts `sluice <args>` (a sandbox) and resolves once it prints its URL on stdout; rejects with the
 * end of its stderr if it exits first or takes longer than `timeoutMs`.
 */
export async function startService(
  args: readonly string[],
  options: { readonly nodeOptions?: readonly string[]; readonly timeoutMs?: number } = {},
): Promise<Service> {
  const started = performance.now();
  const child = spawn(process.execPath, [...(options.nodeOptions ?? []), SLUICE_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SLUICE_LOG_LEVEL: 'error' },
  });
  const errors: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (text: string) => tail(errors, text));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`sluice ${args.slice(0, 2).join(' ')} did not start in time`)),
        options.timeoutMs ?? 600_000,
      );
      lines.on('line', (line) => {
        if (/^https?:\/\//.test(line.trim())) {
          clearTimeout(timer);
          resolve(line.trim());
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(
            `sluice ${args.slice(0, 2).join(' ')} exited (${code ?? signal}) before printing its URL:\n  ${errors.join('\n  ')}`,
          ),
        );
      });
    });
    return {
      url,
      pid: child.pid,
      startMs: performance.now() - started,
      usage: () => procUsage(child.pid),
      exitInfo: () =>
        child.exitCode === null && child.signalCode === null
          ? undefined
          : `exited (${child.exitCode ?? child.signalCode}): ${errors.slice(-3).join(' | ')}`,
      stop: () => stopChild(child),
    };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

export interface ChildRun {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderrTail: readonly string[];
  readonly wallMs: number;
  /** From bench/rss-probe.ts: the child's own getrusage at exit. */
  readonly probe?: {
    readonly maxRssMb: number;
    readonly cpuSec: number;
    readonly maxLiveHeapMb?: number;
    readonly fullGcs?: number;
  };
  /** The highest VmHWM seen while polling /proc (a fallback when the probe did not write). */
  readonly polledPeakRssMb?: number;
}

/**
 * Runs `node --import bench/rss-probe.ts <script> <args>` to completion, collecting stdout, and its peak
 * RSS and CPU time as the child itself measured them at exit.
 */
export async function runChild(
  script: string,
  args: readonly string[],
  env: Readonly<Record<string, string>>,
  probeFile: string,
  nodeOptions: readonly string[] = [],
): Promise<ChildRun> {
  const started = performance.now();
  const child = spawn(process.execPath, [...nodeOptions, '--import', RSS_PROBE, script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SLUICE_LOG_LEVEL: 'error', ...env, SLUICE_BENCH_PROBE_FILE: probeFile },
  });
  let stdout = '';
  const errors: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => tail(errors, text));
  let polled = 0;
  const poll = setInterval(() => {
    polled = Math.max(polled, procUsage(child.pid).peakRssMb ?? 0);
  }, 250);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearInterval(poll);
  let probe: ChildRun['probe'];
  try {
    probe = JSON.parse(readFileSync(probeFile, 'utf8')) as ChildRun['probe'];
  } catch {
    probe = undefined;
  }
  return {
    exitCode: code,
    stdout,
    stderrTail: errors,
    wallMs: performance.now() - started,
    ...(probe ? { probe } : {}),
    ...(polled > 0 ? { polledPeakRssMb: polled } : {}),
  };
}

/** Starts a long-running child (the loop runners of the latency benchmark); stopped with SIGTERM. */
export function startChild(
  script: string,
  args: readonly string[],
  env: Readonly<Record<string, string>>,
  onLine: (line: string) => void,
): {
  readonly pid: number | undefined;
  stop(): Promise<void>;
  stderrTail(): readonly string[];
  exited(): boolean;
} {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SLUICE_LOG_LEVEL: 'error', ...env },
  });
  const errors: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (text: string) => tail(errors, text));
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', onLine);
  return {
    pid: child.pid,
    stop: () => stopChild(child),
    stderrTail: () => errors,
    exited: () => child.exitCode !== null || child.signalCode !== null,
  };
}
