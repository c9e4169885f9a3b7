/** The benchmark report: its shape (the JSON written by bench/run.ts) and its human-readable tables. */
import type { ClusterResult } from './cluster.bench.ts';
import type { BenchResult } from './consent.bench.ts';
import type { E2eVolume } from './e2e.bench.ts';
import type { LatencyResult } from './latency.bench.ts';
import type { StageOutcome } from './stages.bench.ts';
import type { ValidateBenchResult } from './validate.bench.ts';

export interface BenchReport {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly quick: boolean;
  readonly machine: {
    readonly cpus: number;
    readonly cpuModel: string;
    readonly memoryGb: number;
    readonly node: string;
    /** 1-minute load average at the start and the end (the machine may be shared). */
    readonly loadStart: number;
    readonly loadEnd: number;
  };
  readonly commit?: string;
  readonly stages?: readonly StageOutcome[];
  readonly validate?: ValidateBenchResult;
  readonly consent?: readonly BenchResult[];
  readonly e2e?: readonly E2eVolume[];
  readonly latency?: readonly LatencyResult[];
  readonly cluster?: ClusterResult;
  readonly targets: readonly Target[];
}

export interface Target {
  readonly name: string;
  readonly target: string;
  readonly value: string;
  readonly met: boolean;
}

type Cell = string | number | undefined;

function cell(value: Cell): string {
  if (value === undefined || (typeof value === 'number' && Number.isNaN(value))) return '-';
  return typeof value === 'number' ? value.toLocaleString('en-US') : value;
}

/** Left-aligned text columns, right-aligned numbers. */
export function table(head: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((r) => r.map(cell));
  const widths = head.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? '').length)));
  const numeric = head.map((_, i) => rows.every((r) => typeof r[i] !== 'string'));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...text.map(line)].join('\n');
}

/** An error in a table cell: its first line, shortened (the JSON keeps it whole). */
const brief = (error: string | undefined): string => {
  const first = (error ?? '').split('\n', 1)[0] ?? '';
  return first.length > 90 ? `${first.slice(0, 89)}…` : first;
};

const pct = (ratio: number | undefined): string | undefined =>
  ratio === undefined ? undefined : `${(ratio * 100).toFixed(ratio < 0.1 ? 2 : 1)}%`;

export function formatReport(report: BenchReport): string {
  const out: string[] = [];
  const m = report.machine;
  out.push(
    `Sluice benchmarks ${report.quick ? '(quick) ' : ''}— ${report.startedAt} — ${m.cpus} × ${m.cpuModel}, ` +
      `${m.memoryGb} GiB, Node ${m.node}, load ${m.loadStart} → ${m.loadEnd}${report.commit ? `, ${report.commit}` : ''}`,
  );
  if (report.stages) {
    out.push(
      '',
      'Stage throughput, one core (baseline: JSON.parse + JSON.stringify of the same lines, beside it)',
    );
    out.push(
      table(
        ['stage', 'corpus', 'items', 'unit', 'per s', 'baseline/s', 'ratio', 'note'],
        report.stages.map((s) =>
          'error' in s
            ? [
                s.stage,
                s.corpus,
                undefined,
                undefined,
                undefined,
                undefined,
                undefined,
                `ERROR ${brief(s.error)}`,
              ]
            : [s.stage, s.corpus, s.items, s.unit, s.perSec, s.baselinePerSec, `${s.ratio}x`, s.note ?? ''],
        ),
      ),
    );
  }
  if (report.validate) {
    const v = report.validate;
    out.push(
      '',
      `Validation (${v.resources} Synthea resources): compiled ${cell(v.fastPerSec)}/s, medplum ` +
        `${cell(v.medplumPerSec)}/s — ${v.ratio}x`,
    );
  }
  if (report.consent) out.push('');
  for (const c of report.consent ?? []) {
    out.push(
      `Consent ${c.name}: ${cell(c.opsPerSec)} checks/s, p50 ${c.p50Ms.toFixed(4)} ms, p95 ` +
        `${c.p95Ms.toFixed(4)} ms, p99 ${c.p99Ms.toFixed(4)} ms` +
        (c.loadMs === undefined ? '' : `, loaded in ${cell(c.loadMs)} ms`),
    );
  }
  if (report.e2e) {
    out.push('', 'End to end: EHR sandbox → sluice run --once → CRM sandbox (three processes)');
    const rows: Cell[][] = [];
    for (const v of report.e2e) {
      if (v.runs.length === 0) rows.push([v.volume, '-', `ERROR ${brief(v.error)}`]);
      for (const r of v.runs) {
        rows.push([
          v.volume,
          r.mode,
          r.status === 'succeeded' ? 'ok' : `FAILED ${brief(r.error)}`,
          r.read,
          r.runMs === undefined ? undefined : (r.runMs / 1000).toFixed(1),
          r.resourcesPerSec,
          r.baselinePerSec,
          pct(r.ratio),
          r.pipeline?.peakRssMb,
          r.pipeline?.liveHeapMb,
          r.pipeline?.cpuSec,
          r.ehr?.runCpuSec,
          r.crm?.runCpuSec,
          v.seedMs === undefined ? undefined : (v.seedMs / 1000).toFixed(1),
          v.ehrAfterSeed?.rssMb,
        ]);
      }
    }
    out.push(
      table(
        [
          'volume',
          'mode',
          'status',
          'read',
          'run s',
          'res/s',
          'baseline/s',
          'ratio',
          'pipeline peak MiB',
          'live heap MiB',
          'pipeline CPU s',
          'EHR CPU s',
          'CRM CPU s',
          'seed s',
          'EHR MiB',
        ],
        rows,
      ),
    );
  }
  const costed = (report.e2e ?? []).flatMap((v) => v.runs).filter((r) => r.cpu !== undefined);
  if (costed.length > 0) {
    const cores = costed[0]?.cpu?.cores;
    out.push(
      '',
      `CPU per resource, in baseline units (one bare parse + stringify of a resource). The three processes share ` +
        `${cores} cores: a run can reach at most cores / total of the baseline rate (ceiling); the target leaves ` +
        `cores / 0.30 units (budget).`,
    );
    out.push(
      table(
        ['volume', 'mode', 'pipeline', 'EHR', 'CRM', 'total', 'budget', 'ceiling', 'measured'],
        costed.map((r) => [
          r.volume,
          r.mode,
          r.cpu?.pipeline,
          r.cpu?.ehr,
          r.cpu?.crm,
          r.cpu?.total,
          r.cpu?.budget,
          pct(r.cpu?.ceiling),
          pct(r.ratio),
        ]),
      ),
    );
  }
  for (const run of (report.e2e ?? []).flatMap((v) => v.runs)) {
    if (!run.profile) continue;
    out.push(
      '',
      `Profile of the pipeline, ${run.volume} ${run.mode} (${run.profile.totalMs} ms sampled; ${run.profile.file})`,
    );
    out.push(
      table(
        ['self ms', 'share', 'where'],
        run.profile.byFile.slice(0, 10).map((e) => [e.ms, `${e.share}%`, e.name]),
      ),
    );
    out.push(
      table(
        ['incl. ms', 'share', 'function'],
        run.profile.functions.slice(0, 15).map((e) => [e.ms, `${e.share}%`, e.name]),
      ),
    );
  }
  if (report.latency) {
    out.push('', 'Latency: one changed Organization in the EHR → its Account renamed in the CRM');
    out.push(
      table(
        ['pipeline', 'changes', 'timeouts', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'cycle p50 ms', 'note'],
        report.latency.map((l) => [
          l.kind,
          l.changes,
          l.timeouts,
          l.p50Ms,
          l.p95Ms,
          l.p99Ms,
          l.maxMs,
          l.cycleP50Ms,
          l.error ? `ERROR ${brief(l.error)}` : '',
        ]),
      ),
    );
  }
  if (report.cluster) out.push('', formatCluster(report.cluster));
  if (report.targets.length > 0) {
    out.push('', 'Targets');
    out.push(
      table(
        ['', 'target', 'measured', 'what'],
        report.targets.map((t) => [t.met ? 'MET' : 'NOT MET', t.target, t.value, t.name]),
      ),
    );
  }
  return out.join('\n');
}

const seconds = (ms: number | undefined): string | undefined =>
  ms === undefined ? undefined : (ms / 1000).toFixed(1);

function formatCluster(c: ClusterResult): string {
  const out: string[] = [
    `Cluster mode vs embedded: EHR sandbox → sluice → CRM sandbox, ${c.volume} resources, ${c.mode} reads, ` +
      `state.encryption set in every configuration (the reference included), so only the store and the bus differ. ` +
      `PostgreSQL ${c.postgres.url}${c.postgres.unavailable ? ' (unavailable)' : ''}, NATS ${c.nats.url}` +
      `${c.nats.unavailable ? ' (unavailable)' : ''}. ${c.rounds === 1 ? 'One round' : `Mean of ${c.rounds} rounds, every other one in reverse order`}. ` +
      `run s: the commands' own durations; process s: spawn to exit; peak MiB: the sluice process's peak RSS; ` +
      `machine CPU s: every process on the machine (PostgreSQL and NATS included) during the configuration.`,
  ];
  if (c.error) out.push(`ERROR ${brief(c.error)}`);
  const rows: Cell[][] = [];
  for (const r of c.summary) {
    const status =
      r.status === 'succeeded'
        ? 'ok'
        : r.status === 'skipped'
          ? `SKIPPED ${brief(r.error)}`
          : `FAILED ${r.rounds - r.succeeded}/${r.rounds} ${brief(r.error)}`;
    const bus = r.steps.length > 1;
    rows.push([
      bus ? `${r.config} (total)` : r.config,
      r.state,
      r.source,
      status,
      r.read,
      r.created,
      seconds(r.runMs),
      r.roundsRunMs && r.roundsRunMs.length > 1
        ? r.roundsRunMs.map((ms) => (ms / 1000).toFixed(1)).join(' / ')
        : undefined,
      seconds(r.processMs),
      r.resourcesPerSec,
      r.baselinePerSec,
      pct(r.ratio),
      pct(r.vsEmbedded),
      r.peakRssMb,
      r.cpuSec,
      r.machineCpuSec,
    ]);
    if (!bus) continue;
    for (const s of r.steps) {
      rows.push([
        `  ${s.command}`,
        '',
        '',
        '',
        undefined,
        undefined,
        seconds(s.runMs),
        undefined,
        seconds(s.processMs),
        s.resourcesPerSec,
        undefined,
        s.resourcesPerSec === undefined ? undefined : pct(s.resourcesPerSec / r.baselinePerSec),
        undefined,
        s.peakRssMb,
        s.cpuSec,
        undefined,
      ]);
    }
  }
  out.push(
    table(
      [
        'configuration',
        'state',
        'source',
        'status',
        'read',
        'created',
        'run s',
        'rounds',
        'process s',
        'res/s',
        'baseline/s',
        'ratio',
        'vs embedded',
        'peak MiB',
        'sluice CPU s',
        'machine CPU s',
      ],
      rows,
    ),
  );
  return out.join('\n');
}
