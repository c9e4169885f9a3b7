/**
 * Cluster mode against embedded: the end-to-end job (EHR sandbox → Sluice → CRM sandbox, each its own
 * process, the e2e bench's corpus, flow and probes) at one volume, in the same run on the same corpus,
 * with the state in SQLite or in PostgreSQL (`state.postgres`, a fresh schema per run, dropped after),
 * and the EHR read by `sluice run` itself or through NATS JetStream (`bus.nats`: `sluice ingest --once`
 * then `sluice run --once`, a fresh stream per run, deleted after). Every configuration, the embedded
 * reference included, sets `state.encryption` (a bus requires it), so the comparison isolates the store
 * and the bus. A configuration whose server is unreachable is skipped with the reason.
 *
 * The configurations run one after the other on the same sandboxed EHR, so the first one would also pay
 * for warming the EHR sandbox up and anything the machine does meanwhile would land on one of them:
 * with two rounds the second runs them in the reverse order, and the summary is the mean of the rounds.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { IngestSummary } from '../src/engine/bus/ingest.ts';
import type { RunSummary } from '../src/engine/pipeline/summary.ts';
import { countCrmRecords, lastJsonLine, message, pipelineFigures, seedVolume } from './e2e.bench.ts';
import {
  BENCH_NATS_URL,
  BENCH_PG_URL,
  benchSchema,
  benchStream,
  deleteStream,
  dropSchema,
  natsProblem,
  postgresProblem,
  redactUrl,
} from './lib/cluster-services.ts';
import { benchFlowEnv, writeBenchFlow } from './lib/flow-file.ts';
import { progress, round } from './lib/measure.ts';
import { machineCpuSec, runChild, type Service, SLUICE_BIN, startService } from './lib/procs.ts';

export const CLUSTER_CONFIGS = ['embedded', 'postgres', 'bus', 'bus+postgres'] as const;
export type ClusterConfigName = (typeof CLUSTER_CONFIGS)[number];

export interface ClusterOptions {
  /** Resources in the corpus (the e2e bench's `flow` corpus, permit Consents included). */
  readonly volume: number;
  readonly workDir: string;
  /** Which configurations; default all four. */
  readonly configs?: readonly ClusterConfigName[];
  /** Rounds over the configurations, every other one in reverse order (default 1). */
  readonly rounds?: number;
  /** Heap limit of the EHR sandbox process, MiB. */
  readonly ehrHeapMb?: number;
}

/** One `sluice` process of a configuration: `run`, or `ingest` before it with a bus. */
export interface ClusterStep {
  readonly command: 'ingest' | 'run';
  readonly status: 'succeeded' | 'failed';
  readonly error?: string;
  readonly read?: number;
  /** `ingest`: new events stored on the bus. */
  readonly published?: number;
  /** `run`: records created in the CRM, as the run reports them. */
  readonly created?: number;
  readonly withheld?: number;
  readonly quarantined?: number;
  /** The command's own duration (its summary: `durationMs`, or `startedAt` → `finishedAt`). */
  readonly runMs?: number;
  /** The process from spawn to exit: start-up (connections, schema migration), the work, close. */
  readonly processMs?: number;
  readonly resourcesPerSec?: number;
  readonly peakRssMb?: number;
  readonly liveHeapMb?: number;
  readonly cpuSec?: number;
}

/** One configuration in one round. */
export interface ClusterRun {
  readonly config: ClusterConfigName;
  /** 1, 2, …: the round (the second runs the configurations in reverse order). */
  readonly round: number;
  readonly state: 'sqlite' | 'postgres';
  readonly source: 'ehr' | 'bus';
  /**
   * `succeeded`: every step succeeded, the CRM holds what the run says it created, and the run read and
   * created what the embedded reference of its round did. `skipped`: a server it needs is unreachable (`error` says).
   */
  readonly status: 'succeeded' | 'failed' | 'skipped';
  readonly error?: string;
  readonly steps: readonly ClusterStep[];
  readonly read?: number;
  readonly created?: number;
  readonly crmRecords?: number;
  /** The steps' own durations added up. */
  readonly runMs?: number;
  /** The steps' processes, spawn to exit, added up. */
  readonly processMs?: number;
  /** Resources read by the run per second of `runMs`. */
  readonly resourcesPerSec?: number;
  readonly baselinePerSec: number;
  /** resourcesPerSec / baselinePerSec. */
  readonly ratio?: number;
  /** resourcesPerSec / that of the embedded reference of the same round (1 for the reference). */
  readonly vsEmbedded?: number;
  /** The highest peak RSS of its sluice processes, MiB. */
  readonly peakRssMb?: number;
  /** CPU seconds of its sluice processes. */
  readonly cpuSec?: number;
  readonly ehrCpuSec?: number;
  readonly crmCpuSec?: number;
  /**
   * Busy CPU seconds of the whole machine over the steps: the sluice processes, the sandboxes, and the
   * PostgreSQL and NATS servers, which no probe sees (and anything else running on the machine).
   */
  readonly machineCpuSec?: number;
}

/** A configuration over the rounds it succeeded in: means, and the highest peak RSS. */
export interface ClusterSummary {
  readonly config: ClusterConfigName;
  readonly state: 'sqlite' | 'postgres';
  readonly source: 'ehr' | 'bus';
  readonly status: 'succeeded' | 'failed' | 'skipped';
  /** Why a round failed, or why the configuration was skipped. */
  readonly error?: string;
  readonly rounds: number;
  readonly succeeded: number;
  readonly read?: number;
  readonly created?: number;
  /** Mean of the rounds' `runMs`, and each round's. */
  readonly runMs?: number;
  readonly roundsRunMs?: readonly number[];
  readonly processMs?: number;
  /** read / mean runMs. */
  readonly resourcesPerSec?: number;
  readonly baselinePerSec: number;
  readonly ratio?: number;
  /** resourcesPerSec / the embedded summary's. */
  readonly vsEmbedded?: number;
  readonly peakRssMb?: number;
  readonly cpuSec?: number;
  readonly machineCpuSec?: number;
  /** Per command (`ingest`, `run`) with a bus: mean duration and rate, highest peak RSS, mean CPU. */
  readonly steps: readonly {
    readonly command: 'ingest' | 'run';
    readonly runMs?: number;
    readonly processMs?: number;
    readonly resourcesPerSec?: number;
    readonly peakRssMb?: number;
    readonly cpuSec?: number;
  }[];
}

export interface ClusterResult {
  readonly volume: number;
  readonly corpusBytes: number;
  readonly byType: Readonly<Record<string, number>>;
  readonly baselinePerSec: number;
  readonly generateMs: number;
  readonly seedMs?: number;
  /** Read mode of every configuration (`source.mode`). */
  readonly mode: 'bulk';
  /** `state.encryption` is set in every configuration, the reference included. */
  readonly stateEncryption: true;
  readonly postgres: { readonly url: string; readonly unavailable?: string };
  readonly nats: { readonly url: string; readonly unavailable?: string };
  readonly error?: string;
  readonly rounds: number;
  /** Per configuration, over the rounds. */
  readonly summary: readonly ClusterSummary[];
  /** Every configuration in every round, in the order they ran. */
  readonly runs: readonly ClusterRun[];
}

interface ConfigSpec {
  readonly config: ClusterConfigName;
  readonly state: 'sqlite' | 'postgres';
  readonly source: 'ehr' | 'bus';
}

const SPECS: readonly ConfigSpec[] = [
  { config: 'embedded', state: 'sqlite', source: 'ehr' },
  { config: 'postgres', state: 'postgres', source: 'ehr' },
  { config: 'bus', state: 'sqlite', source: 'bus' },
  { config: 'bus+postgres', state: 'postgres', source: 'bus' },
];

const STATE_KEY_ID = 'bench-state-1';

export async function benchCluster(options: ClusterOptions): Promise<ClusterResult> {
  const { volume } = options;
  const wanted = new Set(options.configs ?? CLUSTER_CONFIGS);
  const dir = join(options.workDir, `cluster-${volume}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const pgUnavailable = await postgresProblem();
  const natsUnavailable = await natsProblem();
  if (pgUnavailable) progress(`cluster: ${pgUnavailable}; its configurations are skipped`);
  if (natsUnavailable) progress(`cluster: ${natsUnavailable}; its configurations are skipped`);
  const servers = {
    postgres: { url: redactUrl(BENCH_PG_URL), ...(pgUnavailable ? { unavailable: pgUnavailable } : {}) },
    nats: { url: redactUrl(BENCH_NATS_URL), ...(natsUnavailable ? { unavailable: natsUnavailable } : {}) },
  };
  let ehr: Service | undefined;
  try {
    const seeded = await seedVolume(volume, dir, `cluster ${volume}`, options.ehrHeapMb);
    const { base } = seeded;
    const head = {
      ...base,
      mode: 'bulk' as const,
      stateEncryption: true as const,
      ...servers,
    };
    ehr = seeded.ehr;
    const rounds = Math.max(1, options.rounds ?? 1);
    if (!ehr) {
      return { ...head, error: seeded.error ?? 'EHR sandbox: not started', rounds, summary: [], runs: [] };
    }
    const specs = SPECS.filter((spec) => wanted.has(spec.config));
    const attempts: ClusterRun[] = [];
    for (let pass = 1; pass <= rounds; pass++) {
      for (const spec of pass % 2 === 1 ? specs : [...specs].reverse()) {
        const skip =
          (spec.state === 'postgres' ? pgUnavailable : undefined) ??
          (spec.source === 'bus' ? natsUnavailable : undefined);
        if (skip !== undefined) {
          if (pass === 1) progress(`cluster ${volume} ${spec.config}: skipped (${skip})`);
          attempts.push({
            ...spec,
            round: pass,
            status: 'skipped',
            error: skip,
            steps: [],
            baselinePerSec: base.baselinePerSec,
          });
          continue;
        }
        attempts.push(
          await runConfig(spec, { volume, round: pass, ehr, dir, baselinePerSec: base.baselinePerSec }),
        );
      }
    }
    const runs = attempts.map((run) =>
      compareWithReference(
        run,
        attempts.find((r) => r.round === run.round && r.config === 'embedded'),
      ),
    );
    return {
      ...head,
      seedMs: round(ehr.startMs),
      rounds,
      summary: specs.map((spec) => summarise(spec, runs, base.baselinePerSec)),
      runs,
    };
  } finally {
    await ehr?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A run beside the embedded run of its round: its rate as a share of the reference's, and a failure
 * when it read or created other counts (every configuration moves the same records).
 */
function compareWithReference(run: ClusterRun, reference: ClusterRun | undefined): ClusterRun {
  if (run.status !== 'succeeded' || reference?.status !== 'succeeded') return run;
  if (run.config === 'embedded') return { ...run, vsEmbedded: 1 };
  const vsEmbedded =
    run.resourcesPerSec && reference.resourcesPerSec
      ? round(run.resourcesPerSec / reference.resourcesPerSec, 3)
      : undefined;
  const same = run.read === reference.read && run.created === reference.created;
  return {
    ...run,
    ...(same
      ? {}
      : {
          status: 'failed',
          error: `read ${run.read} and created ${run.created}; embedded read ${reference.read} and created ${reference.created}`,
        }),
    ...(vsEmbedded === undefined ? {} : { vsEmbedded }),
  };
}

const mean = (values: readonly number[]): number | undefined =>
  values.length === 0 ? undefined : values.reduce((s, v) => s + v, 0) / values.length;
const defined = (values: readonly (number | undefined)[]): number[] =>
  values.filter((v): v is number => v !== undefined);
const roundedMean = (values: readonly (number | undefined)[], digits = 0): number | undefined => {
  const m = mean(defined(values));
  return m === undefined ? undefined : round(m, digits);
};
const highest = (values: readonly (number | undefined)[]): number | undefined => {
  const d = defined(values);
  return d.length === 0 ? undefined : Math.max(...d);
};

/** A configuration's rounds in one row: the rounds it succeeded in, averaged. */
function summarise(spec: ConfigSpec, runs: readonly ClusterRun[], baselinePerSec: number): ClusterSummary {
  const mine = runs.filter((r) => r.config === spec.config);
  const ok = mine.filter((r) => r.status === 'succeeded');
  const bad = mine.find((r) => r.status !== 'succeeded');
  const runMs = roundedMean(ok.map((r) => r.runMs));
  const read = ok[0]?.read;
  const rate = runMs !== undefined && read !== undefined && runMs > 0 ? (read / runMs) * 1000 : undefined;
  const embedded = runs.filter((r) => r.config === 'embedded' && r.status === 'succeeded');
  const embeddedMs = mean(defined(embedded.map((r) => r.runMs)));
  const embeddedRate =
    embeddedMs !== undefined && embedded[0]?.read !== undefined && embeddedMs > 0
      ? (embedded[0].read / embeddedMs) * 1000
      : undefined;
  const commands = spec.source === 'bus' ? (['ingest', 'run'] as const) : (['run'] as const);
  const field = <K extends keyof ClusterStep>(command: string, key: K): ClusterStep[K][] =>
    ok.map((r) => r.steps.find((s) => s.command === command)?.[key] as ClusterStep[K]);
  return {
    ...spec,
    status:
      ok.length > 0 && !bad ? 'succeeded' : mine.every((r) => r.status === 'skipped') ? 'skipped' : 'failed',
    ...(bad?.error === undefined ? {} : { error: bad.error }),
    rounds: mine.length,
    succeeded: ok.length,
    ...(read === undefined ? {} : { read }),
    ...optional('created', ok[0]?.created),
    ...optional('runMs', runMs),
    ...(ok.length === 0 ? {} : { roundsRunMs: defined(ok.map((r) => r.runMs)) }),
    ...optional('processMs', roundedMean(ok.map((r) => r.processMs))),
    ...optional('resourcesPerSec', rate === undefined ? undefined : round(rate)),
    baselinePerSec,
    ...optional('ratio', rate === undefined ? undefined : round(rate / baselinePerSec, 4)),
    ...optional(
      'vsEmbedded',
      rate === undefined || embeddedRate === undefined ? undefined : round(rate / embeddedRate, 3),
    ),
    ...optional('peakRssMb', highest(ok.map((r) => r.peakRssMb))),
    ...optional(
      'cpuSec',
      roundedMean(
        ok.map((r) => r.cpuSec),
        1,
      ),
    ),
    ...optional(
      'machineCpuSec',
      roundedMean(
        ok.map((r) => r.machineCpuSec),
        1,
      ),
    ),
    steps:
      ok.length === 0
        ? []
        : commands.map((command) => {
            const ms = roundedMean(field(command, 'runMs'));
            const stepRead = field(command, 'read')[0];
            return {
              command,
              ...optional('runMs', ms),
              ...optional('processMs', roundedMean(field(command, 'processMs'))),
              ...optional(
                'resourcesPerSec',
                ms === undefined || stepRead === undefined || ms <= 0
                  ? undefined
                  : round((stepRead / ms) * 1000),
              ),
              ...optional('peakRssMb', highest(field(command, 'peakRssMb'))),
              ...optional('cpuSec', roundedMean(field(command, 'cpuSec'), 1)),
            };
          }),
  };
}

/** Runs one `sluice` command to completion under the RSS probe and reads its `--json` summary. */
async function runStep(
  command: 'ingest' | 'run',
  flowFile: string,
  env: Readonly<Record<string, string>>,
  probeFile: string,
): Promise<ClusterStep> {
  // `ingest` draws no progress bar; `run` draws one on a terminal only, and `--no-progress` says so anyway.
  const args =
    command === 'run'
      ? ['run', flowFile, '--once', '--json', '--no-progress']
      : ['ingest', flowFile, '--once', '--json'];
  const child = await runChild(SLUICE_BIN, args, env, probeFile);
  const figures = pipelineFigures(child);
  const measured = {
    command,
    processMs: round(child.wallMs),
    ...(figures.peakRssMb === undefined ? {} : { peakRssMb: figures.peakRssMb }),
    ...(figures.liveHeapMb === undefined ? {} : { liveHeapMb: figures.liveHeapMb }),
    ...(figures.cpuSec === undefined ? {} : { cpuSec: figures.cpuSec }),
  };
  const noSummary = (): ClusterStep => ({
    ...measured,
    status: 'failed',
    error: `sluice ${command}: no summary (exit ${child.exitCode}): ${child.stderrTail.slice(-3).join(' | ')}`,
  });
  const perSec = (read: number, ms: number): number => (ms > 0 ? round((read / ms) * 1000) : 0);
  const failure = (
    status: string,
    error: { code: string; message: string } | undefined,
  ): string | undefined =>
    status === 'succeeded'
      ? undefined
      : `sluice ${command} ${status}: ${error ? `${error.code}: ${error.message}` : '?'}`;
  if (command === 'ingest') {
    const summary = lastJsonLine<IngestSummary>(child.stdout);
    if (!summary || summary.read === undefined) return noSummary();
    const runMs = Date.parse(summary.finishedAt) - Date.parse(summary.startedAt);
    const error = failure(summary.status, summary.error);
    return {
      ...measured,
      status: error === undefined ? 'succeeded' : 'failed',
      ...(error === undefined ? {} : { error }),
      read: summary.read,
      published: summary.published,
      runMs,
      resourcesPerSec: perSec(summary.read, runMs),
    };
  }
  const summary = lastJsonLine<RunSummary>(child.stdout);
  if (!summary || summary.read === undefined) return noSummary();
  const error = failure(summary.status, summary.error);
  return {
    ...measured,
    status: error === undefined ? 'succeeded' : 'failed',
    ...(error === undefined ? {} : { error }),
    read: summary.read,
    created: summary.created,
    withheld: summary.withheld,
    quarantined: summary.quarantined,
    runMs: summary.durationMs,
    resourcesPerSec: perSec(summary.read, summary.durationMs),
  };
}

async function runConfig(
  spec: ConfigSpec,
  context: {
    readonly volume: number;
    readonly round: number;
    readonly ehr: Service;
    readonly dir: string;
    readonly baselinePerSec: number;
  },
): Promise<ClusterRun> {
  const { volume, ehr, dir, baselinePerSec } = context;
  const label = `cluster ${volume} ${spec.config} (round ${context.round})`;
  const schema = spec.state === 'postgres' ? benchSchema() : undefined;
  const stream = spec.source === 'bus' ? benchStream() : undefined;
  const steps: ClusterStep[] = [];
  const fail = (error: string, extra: Partial<ClusterRun> = {}): ClusterRun => ({
    ...spec,
    round: context.round,
    status: 'failed',
    error,
    steps,
    baselinePerSec,
    ...extra,
  });
  let crm: Service | undefined;
  const cleanup: string[] = [];
  try {
    crm = await startService(['sandbox', 'crm', '--port', '0', '--daily-limit', '1000000000']);
    const name = `${spec.config.replace('+', '-')}-${context.round}`;
    const flowFile = writeBenchFlow(join(dir, `flow-${name}.yaml`), {
      mode: 'bulk',
      stateDir: join(dir, `state-${name}`),
      extra: {
        state: {
          encryption: { key: '${SLUICE_STATE_KEY}', keyId: STATE_KEY_ID },
          ...(schema ? { postgres: { url: '${SLUICE_PG_URL}', schema } } : {}),
        },
        ...(stream ? { bus: { nats: { url: '${SLUICE_NATS_URL}', stream } } } : {}),
      },
    });
    const env = {
      ...benchFlowEnv(ehr.url, crm.url),
      SLUICE_STATE_KEY: randomBytes(32).toString('base64'),
      ...(schema ? { SLUICE_PG_URL: BENCH_PG_URL } : {}),
      ...(stream ? { SLUICE_NATS_URL: BENCH_NATS_URL } : {}),
    };
    const ehrCpu = ehr.usage().cpuSec;
    const crmCpu = crm.usage().cpuSec;
    const machineCpu = machineCpuSec();
    for (const command of spec.source === 'bus' ? (['ingest', 'run'] as const) : (['run'] as const)) {
      progress(`${label}: sluice ${command} --once`);
      const step = await runStep(command, flowFile, env, join(dir, `probe-${name}-${command}.json`));
      steps.push(step);
      if (step.status !== 'succeeded') break;
    }
    const machineCpuEnd = machineCpuSec();
    const ehrCpuEnd = ehr.usage().cpuSec;
    const crmCpuEnd = crm.usage().cpuSec;
    const delta = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined || b === undefined ? undefined : round(b - a, 1);
    const sum = (values: readonly (number | undefined)[]): number | undefined =>
      values.some((v) => v === undefined) ? undefined : values.reduce<number>((s, v) => s + (v ?? 0), 0);
    const run = steps.find((s) => s.command === 'run');
    const runMs = sum(steps.map((s) => s.runMs));
    const peaks = steps.map((s) => s.peakRssMb).filter((v): v is number => v !== undefined);
    const cpu = sum(steps.map((s) => s.cpuSec));
    const measured: Partial<ClusterRun> = {
      ...(run?.read === undefined ? {} : { read: run.read }),
      ...(run?.created === undefined ? {} : { created: run.created }),
      ...(runMs === undefined ? {} : { runMs }),
      processMs: round(steps.reduce((s, step) => s + (step.processMs ?? 0), 0)),
      ...(peaks.length === 0 ? {} : { peakRssMb: Math.max(...peaks) }),
      ...(cpu === undefined ? {} : { cpuSec: round(cpu, 1) }),
      ...optional('ehrCpuSec', delta(ehrCpu, ehrCpuEnd)),
      ...optional('crmCpuSec', delta(crmCpu, crmCpuEnd)),
      ...optional('machineCpuSec', delta(machineCpu, machineCpuEnd)),
    };
    const failed = steps.find((s) => s.status !== 'succeeded');
    if (failed || !run || run.read === undefined || run.created === undefined || runMs === undefined) {
      return fail(failed?.error ?? 'sluice run did not report', measured);
    }
    let crmRecords: number;
    try {
      crmRecords = await countCrmRecords(crm.url);
    } catch (err) {
      return fail(`the CRM sandbox could not be queried: ${crm.exitInfo() ?? message(err)}`, measured);
    }
    const rate = runMs > 0 ? (run.read / runMs) * 1000 : 0;
    const problems: string[] = [];
    if (crmRecords !== run.created) {
      problems.push(`the CRM holds ${crmRecords} records, the run says it created ${run.created}`);
    }
    const ingest = steps.find((s) => s.command === 'ingest');
    if (ingest && ingest.published !== ingest.read) {
      problems.push(`ingest read ${ingest.read} and published ${ingest.published} (a fresh stream)`);
    }
    const result: ClusterRun = {
      ...spec,
      round: context.round,
      status: problems.length === 0 ? 'succeeded' : 'failed',
      ...(problems.length === 0 ? {} : { error: problems.join('; ') }),
      steps,
      ...measured,
      crmRecords,
      resourcesPerSec: round(rate),
      baselinePerSec,
      ratio: round(rate / baselinePerSec, 4),
    };
    progress(
      `${label}: ${result.status}, ${run.read} read in ${round(runMs / 1000, 1)} s (${result.resourcesPerSec}/s), ` +
        `peak RSS ${result.peakRssMb ?? '?'} MiB`,
    );
    return result;
  } catch (err) {
    return fail(`${message(err)}${crm?.exitInfo() ? `; CRM sandbox ${crm.exitInfo()}` : ''}`);
  } finally {
    await crm?.stop();
    if (schema) {
      const problem = await dropSchema(schema);
      if (problem) cleanup.push(problem);
    }
    if (stream) {
      const problem = await deleteStream(stream);
      if (problem) cleanup.push(problem);
    }
    for (const problem of cleanup) progress(`${label}: clean-up: ${problem}`);
  }
}

function optional<K extends string>(key: K, value: number | undefined): { [P in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number };
}
