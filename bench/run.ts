/**
 * `npm run bench -- [--quick] [--json] [--only stages,validate,consent,e2e,latency,cluster]
 *  [--volumes 100000,1000000] [--profile]`
 *
 * `cluster` runs the end-to-end job at one volume (20,000; 5,000 with --quick; the first of --volumes when
 * given) embedded, with its state in PostgreSQL and through the NATS bus (bench/cluster.bench.ts).
 *
 * Runs the benchmarks, prints a table (stdout; stderr with --json, whose stdout is the JSON alone) and
 * writes the JSON to bench/results/<timestamp>.json. Progress goes to stderr. Every rate is reported
 * beside a baseline measured in the same run on the same data, because absolute figures on a shared
 * machine say little. See docs/performance.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../src/testkit/data.ts';
import { benchCluster } from './cluster.bench.ts';
import { benchConsent } from './consent.bench.ts';
import { benchE2e, E2E_TARGET_RATIO } from './e2e.bench.ts';
import { benchLatency } from './latency.bench.ts';
import { progress, round } from './lib/measure.ts';
import { type BenchReport, formatReport, type Target } from './report.ts';
import { benchStages } from './stages.bench.ts';
import { benchValidate } from './validate.bench.ts';

const BENCHES = ['stages', 'validate', 'consent', 'e2e', 'latency', 'cluster'] as const;
type BenchName = (typeof BENCHES)[number];

interface Sizes {
  readonly stageResources: number;
  readonly stageMinMs: number;
  readonly validate: { readonly resources: number; readonly minMs: number };
  readonly consent: { readonly persons: number; readonly checks: number };
  readonly volumes: readonly number[];
  readonly searchUpTo: number;
  readonly latency: { readonly changes: number; readonly resources: number };
  /** Resources of the cluster bench (the first of `--volumes` when given) and its rounds. */
  readonly cluster: { readonly volume: number; readonly rounds: number };
}

const FULL: Sizes = {
  stageResources: 50_000,
  stageMinMs: 3000,
  validate: { resources: 3000, minMs: 3000 },
  consent: { persons: 100_000, checks: 200_000 },
  volumes: [100_000, 1_000_000],
  searchUpTo: 100_000,
  latency: { changes: 50, resources: 10_000 },
  cluster: { volume: 20_000, rounds: 2 },
};

const QUICK: Sizes = {
  stageResources: 10_000,
  stageMinMs: 900,
  validate: { resources: 1000, minMs: 800 },
  consent: { persons: 100_000, checks: 50_000 },
  volumes: [10_000, 50_000],
  searchUpTo: 50_000,
  latency: { changes: 20, resources: 2000 },
  cluster: { volume: 5000, rounds: 1 },
};

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: node bench/run.ts [--quick] [--json] [--only ${BENCHES.join(',')}] [--volumes N,N] [--profile]\n` +
      `  cluster: embedded vs state.postgres vs bus.nats at one volume (default ${FULL.cluster.volume}, ` +
      `--quick ${QUICK.cluster.volume}, else the first of --volumes); needs PostgreSQL and NATS, skips what it cannot reach\n`,
  );
  process.exit(2);
}

function commit(): string | undefined {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' });
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    return `${sha.trim()}${dirty.trim() === '' ? '' : ' (with local changes)'}`;
  } catch {
    return undefined;
  }
}

/** The targets of the issue, each with the measured value and whether it is met. */
export function evaluateTargets(report: Omit<BenchReport, 'targets' | 'finishedAt'>): Target[] {
  const targets: Target[] = [];
  if (report.validate) {
    targets.push({
      name: 'validation: compiled vs medplum',
      target: '>= 10x',
      value: `${report.validate.ratio}x`,
      met: report.validate.ratio >= 10,
    });
  }
  for (const c of report.consent ?? []) {
    targets.push({
      name: `consent check p99: ${c.name}`,
      target: '< 1 ms',
      value: `${round(c.p99Ms, 4)} ms`,
      met: c.p99Ms < 1,
    });
  }
  const bulk = (report.e2e ?? []).map((v) => ({ v, run: v.runs.find((r) => r.mode === 'bulk') }));
  for (const { v, run } of bulk) {
    targets.push({
      name: `end-to-end rate vs parse+stringify, ${v.volume} resources (bulk)`,
      target: '>= 30%',
      value:
        run?.ratio === undefined
          ? `not measured${v.error ? `: ${v.error}` : ''}`
          : `${round(run.ratio * 100, 2)}%${
              run.cpu === undefined
                ? ''
                : ` (CPU ceiling on ${run.cpu.cores} cores ${round(run.cpu.ceiling * 100, 1)}%: ` +
                  `${run.cpu.total} baseline units per resource, ${run.cpu.budget} allowed)`
            }`,
      met: run?.status === 'succeeded' && (run.ratio ?? 0) >= E2E_TARGET_RATIO,
    });
  }
  const [small, large] = bulk;
  if (small && large) {
    const a = small.run?.pipeline?.peakRssMb;
    const b = large.run?.pipeline?.peakRssMb;
    const ok =
      a !== undefined &&
      b !== undefined &&
      small.run?.status === 'succeeded' &&
      large.run?.status === 'succeeded';
    targets.push({
      name: `pipeline peak RSS, ${large.v.volume} vs ${small.v.volume} resources`,
      target: '<= 1.5x',
      value: ok ? `${round(b / a, 2)}x (${a} -> ${b} MiB)` : 'not measured',
      met: ok && b / a <= 1.5,
    });
    const la = small.run?.pipeline?.liveHeapMb;
    const lb = large.run?.pipeline?.liveHeapMb;
    if (ok && la !== undefined && lb !== undefined) {
      targets.push({
        name: `pipeline live heap (after full GC), ${large.v.volume} vs ${small.v.volume} resources`,
        target: '<= 1.5x',
        value: `${round(lb / la, 2)}x (${la} -> ${lb} MiB)`,
        met: lb / la <= 1.5,
      });
    }
  }
  return targets;
}

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (err) {
    usage(err instanceof Error ? err.message : String(err));
  }
  const { quick, json, only, volumes, profile } = parsed;
  const sizes = quick ? QUICK : FULL;
  const startedAt = new Date();
  const loadStart = loadavg()[0] ?? 0;
  const work = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const report: { -readonly [K in keyof BenchReport]?: BenchReport[K] } = {};
  try {
    if (only.has('stages')) {
      progress('stage throughput');
      report.stages = await benchStages({
        resources: sizes.stageResources,
        clinicalResources: sizes.stageResources,
        minMs: sizes.stageMinMs,
        workDir: work,
      });
    }
    if (only.has('validate')) {
      progress('validation: compiled vs medplum');
      report.validate = await benchValidate(sizes.validate);
    }
    if (only.has('consent')) {
      progress('consent check p99');
      report.consent = await benchConsent(sizes.consent);
    }
    if (only.has('e2e')) {
      const profileDir = profile ? join(tmpdir(), `sluice-bench-profiles-${process.pid}`) : undefined;
      if (profileDir) progress(`pipeline CPU profiles go to ${profileDir} (profiled rates are slower)`);
      report.e2e = await benchE2e({
        volumes: volumes ?? sizes.volumes,
        searchUpTo: sizes.searchUpTo,
        workDir: work,
        ...(profileDir ? { profileDir } : {}),
      });
    }
    if (only.has('latency')) {
      progress('latency');
      report.latency = await benchLatency({ ...sizes.latency, workDir: work });
    }
    if (only.has('cluster')) {
      const volume = volumes?.[0] ?? sizes.cluster.volume;
      progress(`cluster mode vs embedded, ${volume} resources, ${sizes.cluster.rounds} round(s)`);
      report.cluster = await benchCluster({ volume, rounds: sizes.cluster.rounds, workDir: work });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const sha = commit();
  const cpu = cpus();
  const partial = {
    startedAt: startedAt.toISOString(),
    quick,
    machine: {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? 'unknown',
      memoryGb: round(totalmem() / 2 ** 30, 1),
      node: process.version,
      loadStart: round(loadStart, 2),
      loadEnd: round(loadavg()[0] ?? 0, 2),
    },
    ...(sha === undefined ? {} : { commit: sha }),
    ...report,
  };
  const full: BenchReport = {
    ...partial,
    finishedAt: new Date().toISOString(),
    targets: evaluateTargets(partial),
  };
  const dir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const text = `${JSON.stringify(full, null, 2)}\n`;
  writeFileSync(file, text);
  const table = `${formatReport(full)}\nResults: ${file}\n`;
  if (json) {
    process.stderr.write(table);
    process.stdout.write(text);
  } else {
    process.stdout.write(table);
  }
}

function parse(): {
  quick: boolean;
  json: boolean;
  profile: boolean;
  only: Set<BenchName>;
  volumes?: number[];
} {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      only: { type: 'string' },
      volumes: { type: 'string' },
      profile: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const only = new Set<BenchName>();
  for (const name of values.only?.split(',') ?? BENCHES) {
    const found = BENCHES.find((b) => b === name.trim());
    if (!found) throw new Error(`unknown benchmark "${name}"`);
    only.add(found);
  }
  const volumes = values.volumes?.split(',').map((v) => Number(v.trim()));
  if (volumes && (volumes.length === 0 || volumes.some((v) => !Number.isInteger(v) || v < 100))) {
    throw new Error('--volumes takes whole numbers of at least 100, comma-separated');
  }
  return {
    quick: values.quick === true,
    json: values.json === true,
    profile: values.profile === true,
    only,
    ...(volumes ? { volumes } : {}),
  };
}

if (import.meta.main) await main();
