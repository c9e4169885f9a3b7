/**
 * End to end: EHR sandbox → `sluice run FLOW --once` → CRM sandbox, each in its own process, at two
 * volumes. Reports the pipeline's wall time and rate (as a ratio to bare parse + stringify of the same
 * NDJSON, measured in the same run), its peak RSS (its own getrusage at exit), the sandboxes' memory
 * and CPU, and checks that the CRM holds what the run says it created.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { RunSummary } from '../src/engine/pipeline/summary.ts';
import { generateCorpus } from './corpus.ts';
import { baselineOfFiles } from './lib/baseline.ts';
import { CrmProbe } from './lib/crm.ts';
import { benchFlowEnv, exampleConsentSpec, writeBenchFlow } from './lib/flow-file.ts';
import { progress, round } from './lib/measure.ts';
import {
  type ChildRun,
  type ProcUsage,
  runChild,
  type Service,
  SLUICE_BIN,
  startService,
} from './lib/procs.ts';
import { type ProfileSummary, summariseProfile } from './lib/profile.ts';

export type ReadMode = 'search' | 'bulk';

export interface E2eOptions {
  /** Resources per volume: the `flow` corpus, with a permit Consent per Patient when the flow checks consent. */
  readonly volumes: readonly number[];
  /** Search mode is also run for volumes up to this one (its sandbox cost grows with the volume). */
  readonly searchUpTo: number;
  readonly workDir: string;
  /** Heap limit of the EHR sandbox process (it holds every resource in memory), MiB. */
  readonly ehrHeapMb?: number;
  /**
   * Run the pipeline under `node --cpu-prof`, profiles into this folder, a summary in each run's
   * `profile`. Profiling slows the run: its rates are not comparable with unprofiled ones.
   */
  readonly profileDir?: string;
}

export interface E2eRun {
  readonly volume: number;
  readonly mode: ReadMode;
  /** `succeeded` when the run succeeded and the CRM holds what it says it created. */
  readonly status: 'succeeded' | 'failed';
  readonly error?: string;
  readonly read?: number;
  readonly created?: number;
  readonly withheld?: number;
  readonly quarantined?: number;
  readonly batches?: number;
  /** Records in the CRM sandbox after the run (Accounts, addresses, patient profiles). */
  readonly crmRecords?: number;
  /** The run's own duration (summary.durationMs). */
  readonly runMs?: number;
  /** The `sluice run` process from spawn to exit (start-up, definitions, run, close). */
  readonly processMs?: number;
  readonly resourcesPerSec?: number;
  readonly baselinePerSec: number;
  /** resourcesPerSec / baselinePerSec (target ≥ 0.30). */
  readonly ratio?: number;
  readonly pipeline?: {
    readonly peakRssMb?: number;
    readonly cpuSec?: number;
    /** Heap in use right after a full GC, the highest seen (what the pipeline really holds). */
    readonly liveHeapMb?: number;
  };
  /** CPU seconds the sandboxes spent during the run, and their memory after it. */
  readonly ehr?: ProcUsage & { readonly runCpuSec?: number };
  readonly crm?: ProcUsage & { readonly runCpuSec?: number };
  /** Where the pipeline's CPU time went, when profiled (`--profile`). */
  readonly profile?: ProfileSummary;
  /** What the run cost in CPU, against what the rate target allows (see `cpuBudget`). */
  readonly cpu?: CpuBudget;
}

/** The rate target: the end-to-end rate as a share of the bare parse + stringify rate. */
export const E2E_TARGET_RATIO = 0.3;

/**
 * CPU per resource read, counted in baseline units: one unit is what bare parse + stringify of one
 * resource of the same NDJSON took on one core in the same run. The three processes share the
 * machine's cores, so no run can beat `cores / total` of the baseline rate however well it uses them
 * (`ceiling`); the rate target leaves `cores / target` units per resource for all three (`budget`).
 * Units hold across machines and loads where seconds do not.
 */
export interface CpuBudget {
  readonly cores: number;
  readonly pipeline: number;
  readonly ehr: number;
  readonly crm: number;
  readonly total: number;
  /** Units per resource the target allows the three processes together. */
  readonly budget: number;
  /** The highest rate ratio these costs allow with every core busy all the time. */
  readonly ceiling: number;
}

/** The CPU budget of a run from its CPU seconds; undefined when a figure is missing. */
export function cpuBudget(input: {
  readonly read: number | undefined;
  readonly baselinePerSec: number;
  readonly cores: number;
  readonly pipelineCpuSec: number | undefined;
  readonly ehrCpuSec: number | undefined;
  readonly crmCpuSec: number | undefined;
}): CpuBudget | undefined {
  const { read, baselinePerSec, cores, pipelineCpuSec, ehrCpuSec, crmCpuSec } = input;
  if (read === undefined || read <= 0 || baselinePerSec <= 0 || cores <= 0) return undefined;
  if (pipelineCpuSec === undefined || ehrCpuSec === undefined || crmCpuSec === undefined) return undefined;
  const units = (sec: number): number => (sec * baselinePerSec) / read;
  const total = units(pipelineCpuSec + ehrCpuSec + crmCpuSec);
  if (total <= 0) return undefined;
  return {
    cores,
    pipeline: round(units(pipelineCpuSec), 2),
    ehr: round(units(ehrCpuSec), 2),
    crm: round(units(crmCpuSec), 2),
    total: round(total, 2),
    budget: round(cores / E2E_TARGET_RATIO, 2),
    ceiling: round(cores / total, 4),
  };
}

export interface E2eVolume {
  readonly volume: number;
  readonly corpusBytes: number;
  readonly byType: Readonly<Record<string, number>>;
  readonly baselinePerSec: number;
  readonly generateMs: number;
  /** Spawn to URL of the EHR sandbox: seeding all resources from NDJSON. */
  readonly seedMs?: number;
  readonly ehrAfterSeed?: ProcUsage;
  readonly error?: string;
  readonly runs: readonly E2eRun[];
}

const CRM_OBJECTS = ['Account', 'Address_vod__c', 'Patient_Profile__c'] as const;

/** The last JSON line of a `--json` command's stdout: its summary (`sluice run`'s by default). */
export function lastJsonLine<T = RunSummary>(text: string): T | undefined {
  const lines = text.trim().split('\n').reverse();
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    try {
      return JSON.parse(line) as T;
    } catch {
      // not the summary
    }
  }
  return undefined;
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Records in the CRM sandbox (Accounts, addresses, patient profiles): what the runs created there. */
export async function countCrmRecords(crmUrl: string): Promise<number> {
  const probe = new CrmProbe(crmUrl);
  let records = 0;
  for (const object of CRM_OBJECTS) records += await probe.count(object);
  return records;
}

/** A benchmarked child's peak RSS, CPU and live heap, as it measured them (polled RSS as a fallback). */
export function pipelineFigures(child: ChildRun): NonNullable<E2eRun['pipeline']> {
  if (child.probe) {
    return {
      peakRssMb: child.probe.maxRssMb,
      cpuSec: round(child.probe.cpuSec, 1),
      ...(child.probe.maxLiveHeapMb === undefined ? {} : { liveHeapMb: child.probe.maxLiveHeapMb }),
    };
  }
  return child.polledPeakRssMb === undefined ? {} : { peakRssMb: child.polledPeakRssMb };
}

type VolumeBase = Omit<E2eVolume, 'runs' | 'seedMs' | 'ehrAfterSeed' | 'error'>;

/**
 * What every end-to-end run of a volume reads: the `flow` corpus (a permit Consent per Patient when the
 * flow checks consent) generated into `dir/seed`, the baseline over it, and the EHR sandbox seeded with
 * it — or why it could not start. The caller stops the sandbox.
 */
export async function seedVolume(
  volume: number,
  dir: string,
  label: string,
  ehrHeapMb = 8192,
): Promise<{ readonly base: VolumeBase; readonly ehr?: Service; readonly error?: string }> {
  progress(`${label}: generating the corpus`);
  const started = performance.now();
  const consents = exampleConsentSpec();
  const corpus = generateCorpus({
    dir: join(dir, 'seed'),
    resources: volume,
    kind: 'flow',
    ...(consents ? { consents } : {}),
    onProgress: (n) => progress(`${label}: ${n} resources generated`),
  });
  const generateMs = performance.now() - started;
  progress(`${label}: baseline (parse + stringify of the same NDJSON)`);
  const baseline = await baselineOfFiles(corpus.files);
  const base = {
    volume,
    corpusBytes: corpus.bytes,
    byType: corpus.byType,
    baselinePerSec: round(baseline.perSec),
    generateMs: round(generateMs),
  };
  progress(`${label}: seeding the EHR sandbox`);
  let ehr: Service;
  try {
    ehr = await startService(['sandbox', 'ehr', '--port', '0', '--seed', join(dir, 'seed')], {
      nodeOptions: [`--max-old-space-size=${ehrHeapMb}`],
      timeoutMs: 3_600_000,
    });
  } catch (err) {
    return { base, error: `EHR sandbox: ${message(err)}` };
  }
  progress(`${label}: seeded in ${round(ehr.startMs / 1000, 1)} s (EHR RSS ${ehr.usage().rssMb ?? '?'} MiB)`);
  return { base, ehr };
}

export async function benchE2e(options: E2eOptions): Promise<E2eVolume[]> {
  const out: E2eVolume[] = [];
  for (const volume of options.volumes) out.push(await benchVolume(volume, options));
  return out;
}

async function benchVolume(volume: number, options: E2eOptions): Promise<E2eVolume> {
  const dir = join(options.workDir, `e2e-${volume}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  let ehr: Service | undefined;
  try {
    const seeded = await seedVolume(volume, dir, `e2e ${volume}`, options.ehrHeapMb);
    const { base } = seeded;
    ehr = seeded.ehr;
    if (!ehr) return { ...base, error: seeded.error ?? 'EHR sandbox: not started', runs: [] };
    const ehrAfterSeed = ehr.usage();
    const modes: ReadMode[] = volume <= options.searchUpTo ? ['bulk', 'search'] : ['bulk'];
    const runs: E2eRun[] = [];
    for (const mode of modes) {
      runs.push(await runOnce(volume, mode, ehr, dir, base.baselinePerSec, options.profileDir));
    }
    return { ...base, seedMs: round(ehr.startMs), ehrAfterSeed, runs };
  } finally {
    await ehr?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runOnce(
  volume: number,
  mode: ReadMode,
  ehr: Service,
  dir: string,
  baselinePerSec: number,
  profileDir: string | undefined,
): Promise<E2eRun> {
  const fail = (error: string, extra: Partial<E2eRun> = {}): E2eRun => ({
    volume,
    mode,
    status: 'failed',
    error,
    baselinePerSec,
    ...extra,
  });
  let crm: Service | undefined;
  try {
    crm = await startService(['sandbox', 'crm', '--port', '0', '--daily-limit', '1000000000']);
    const stateDir = join(dir, `state-${mode}`);
    const flowFile = writeBenchFlow(join(dir, `flow-${mode}.yaml`), { mode, stateDir });
    const ehrCpu = ehr.usage().cpuSec ?? 0;
    const crmCpu = crm.usage().cpuSec ?? 0;
    progress(`e2e ${volume}: pipeline run (${mode})`);
    const profileTo = profileDir === undefined ? undefined : join(profileDir, `${volume}-${mode}`);
    const child = await runChild(
      SLUICE_BIN,
      ['run', flowFile, '--once', '--json', '--no-progress'],
      benchFlowEnv(ehr.url, crm.url),
      join(dir, `probe-${mode}.json`),
      profileTo === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileTo}`],
    );
    const profileFile =
      profileTo === undefined
        ? undefined
        : readdirSync(profileTo)
            .filter((f) => f.endsWith('.cpuprofile'))
            .map((f) => join(profileTo, f))[0];
    const ehrUsage = ehr.usage();
    const crmUsage = crm.usage();
    const summary = lastJsonLine(child.stdout);
    const measured: Partial<E2eRun> = {
      processMs: round(child.wallMs),
      pipeline: pipelineFigures(child),
      ehr: { ...ehrUsage, runCpuSec: round((ehrUsage.cpuSec ?? 0) - ehrCpu, 1) },
      crm: { ...crmUsage, runCpuSec: round((crmUsage.cpuSec ?? 0) - crmCpu, 1) },
      ...(profileFile === undefined ? {} : { profile: summariseProfile(profileFile) }),
    };
    if (!summary) {
      return fail(
        `no run summary (exit ${child.exitCode}): ${child.stderrTail.slice(-3).join(' | ')}`,
        measured,
      );
    }
    let crmRecords: number;
    try {
      crmRecords = await countCrmRecords(crm.url);
    } catch (err) {
      const why = crm.exitInfo() ?? message(err);
      return fail(`run ${summary.status}; the CRM sandbox could not be queried: ${why}`, {
        ...measured,
        read: summary.read,
        created: summary.created,
        runMs: summary.durationMs,
      });
    }
    const rate = summary.durationMs > 0 ? (summary.read / summary.durationMs) * 1000 : 0;
    const cpu = cpuBudget({
      read: summary.read,
      baselinePerSec,
      cores: availableParallelism(),
      pipelineCpuSec: measured.pipeline?.cpuSec,
      ehrCpuSec: measured.ehr?.runCpuSec,
      crmCpuSec: measured.crm?.runCpuSec,
    });
    const run: E2eRun = {
      volume,
      mode,
      status: summary.status === 'succeeded' && crmRecords === summary.created ? 'succeeded' : 'failed',
      ...(summary.error ? { error: `${summary.error.code}: ${summary.error.message}` } : {}),
      ...(summary.status === 'succeeded' && crmRecords !== summary.created
        ? { error: `the CRM holds ${crmRecords} records, the run says it created ${summary.created}` }
        : {}),
      read: summary.read,
      created: summary.created,
      withheld: summary.withheld,
      quarantined: summary.quarantined,
      batches: summary.batches,
      crmRecords,
      runMs: summary.durationMs,
      resourcesPerSec: round(rate),
      baselinePerSec,
      ratio: round(rate / baselinePerSec, 4),
      ...measured,
      ...(cpu === undefined ? {} : { cpu }),
    };
    progress(
      `e2e ${volume} ${mode}: ${run.status}, ${summary.read} read in ${round(summary.durationMs / 1000, 1)} s ` +
        `(${run.resourcesPerSec}/s), pipeline peak RSS ${run.pipeline?.peakRssMb ?? '?'} MiB`,
    );
    return run;
  } catch (err) {
    return fail(`${message(err)}${crm?.exitInfo() ? `; CRM sandbox ${crm.exitInfo()}` : ''}`);
  } finally {
    await crm?.stop();
  }
}
