import { describe, expect, it } from 'vitest';
import { cpuBudget, type E2eRun, type E2eVolume } from './e2e.bench.ts';
import { evaluateTargets } from './run.ts';

const run = (volume: number, over: Partial<E2eRun>): E2eRun => ({
  volume,
  mode: 'bulk',
  status: 'succeeded',
  baselinePerSec: 1,
  ...over,
});
const volume = (v: number, runs: E2eRun[]): E2eVolume => ({
  volume: v,
  corpusBytes: 0,
  byType: {},
  baselinePerSec: 1,
  generateMs: 0,
  runs,
});
const base = {
  startedAt: '2026-11-23T00:00:00Z',
  quick: false,
  machine: { cpus: 2, cpuModel: 'test', memoryGb: 1, node: 'v24', loadStart: 0, loadEnd: 0 },
};

describe('benchmark targets', () => {
  it('judges each target of the issue from the measured figures', () => {
    const targets = evaluateTargets({
      ...base,
      validate: { resources: 10, fastPerSec: 120, medplumPerSec: 10, ratio: 12 },
      consent: [
        { name: 'in memory', opsPerSec: 1, p50Ms: 0.01, p95Ms: 0.02, p99Ms: 0.03 },
        { name: 'over SQLite', opsPerSec: 1, p50Ms: 0.5, p95Ms: 0.9, p99Ms: 1.2 },
      ],
      e2e: [
        volume(100_000, [
          run(100_000, { ratio: 0.31, pipeline: { peakRssMb: 800, liveHeapMb: 180 } }),
          run(100_000, { mode: 'search', ratio: 0.05 }),
        ]),
        volume(1_000_000, [run(1_000_000, { ratio: 0.29, pipeline: { peakRssMb: 1100, liveHeapMb: 300 } })]),
      ],
    });
    const verdict = Object.fromEntries(targets.map((t) => [t.name, t.met]));
    expect(verdict).toEqual({
      'validation: compiled vs medplum': true,
      'consent check p99: in memory': true,
      'consent check p99: over SQLite': false,
      'end-to-end rate vs parse+stringify, 100000 resources (bulk)': true,
      'end-to-end rate vs parse+stringify, 1000000 resources (bulk)': false,
      'pipeline peak RSS, 1000000 vs 100000 resources': true,
      'pipeline live heap (after full GC), 1000000 vs 100000 resources': false,
    });
  });

  it('does not call a failed run met, nor compare memory across a failed run', () => {
    const targets = evaluateTargets({
      ...base,
      e2e: [
        volume(100_000, [run(100_000, { ratio: 0.5, pipeline: { peakRssMb: 800 } })]),
        volume(1_000_000, [
          run(1_000_000, { status: 'failed', ratio: 0.5, pipeline: { peakRssMb: 810 }, error: 'x' }),
        ]),
      ],
    });
    expect(targets.find((t) => t.name.includes('1000000 resources (bulk)'))?.met).toBe(false);
    const rss = targets.find((t) => t.name.startsWith('pipeline peak RSS'));
    expect(rss).toMatchObject({ met: false, value: 'not measured' });
    expect(targets.some((t) => t.name.startsWith('pipeline live heap'))).toBe(false);
  });

  it('counts CPU per resource in baseline units, with the ceiling the cores allow and the budget the target leaves', () => {
    // 100,000 resources, a baseline of 100,000/s (10 µs a resource): 20 s of pipeline CPU is 20 units.
    const cpu = cpuBudget({
      read: 100_000,
      baselinePerSec: 100_000,
      cores: 2,
      pipelineCpuSec: 20,
      ehrCpuSec: 3,
      crmCpuSec: 2,
    });
    expect(cpu).toEqual({ cores: 2, pipeline: 20, ehr: 3, crm: 2, total: 25, budget: 6.67, ceiling: 0.08 });
    // However well the run used both cores, 25 units a resource cannot beat 2 / 25 = 8% of the baseline.
    expect(
      cpuBudget({ read: 0, baselinePerSec: 1, cores: 2, pipelineCpuSec: 1, ehrCpuSec: 1, crmCpuSec: 1 }),
    ).toBe(undefined);
    expect(
      cpuBudget({
        read: 10,
        baselinePerSec: 1,
        cores: 2,
        pipelineCpuSec: undefined,
        ehrCpuSec: 1,
        crmCpuSec: 1,
      }),
    ).toBe(undefined);
    const targets = evaluateTargets({
      ...base,
      e2e: [volume(100_000, [run(100_000, { ratio: 0.05, ...(cpu ? { cpu } : {}) })])],
    });
    expect(targets[0]?.value).toBe(
      '5% (CPU ceiling on 2 cores 8%: 25 baseline units per resource, 6.67 allowed)',
    );
    expect(targets[0]?.met).toBe(false);
  });
});
