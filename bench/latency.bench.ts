/**
 * Change latency: one Organization renamed in the EHR sandbox → the new name readable on its Account in
 * the CRM sandbox, one change at a time, at random moments relative to the pipeline's cycle. Two ways of
 * running the pipeline, each in its own process:
 * - `runflow-loop`: bench/loop-runner.ts calls `runFlow` back to back (no batching window at all);
 * - `sluice-run`: `sluice run FLOW` in loop mode with `schedule.intervalSeconds: 1` (the minimum).
 * Source mode is search (`_lastUpdated`): a bulk export per cycle would be the wrong tool for this. The
 * flow keeps the example's overlap window; changes start once the seed is older than it.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sourceExternalId } from '../src/core/mapping/canonical-to-veeva.ts';
import { REPO_ROOT } from '../src/testkit/data.ts';
import { generateCorpus } from './corpus.ts';
import { CrmProbe } from './lib/crm.ts';
import { benchFlowEnv, exampleConsentSpec, exampleOverlapSeconds, writeBenchFlow } from './lib/flow-file.ts';
import { progress, quantile, round } from './lib/measure.ts';
import { procUsage, type Service, SLUICE_BIN, startChild, startService } from './lib/procs.ts';

export type LoopKind = 'runflow-loop' | 'sluice-run';

export interface LatencyOptions {
  readonly changes: number;
  /** Resources seeded in the EHR (the flow corpus): the size each cycle's searches run against. */
  readonly resources: number;
  readonly workDir: string;
  readonly kinds?: readonly LoopKind[];
}

export interface LatencyResult {
  readonly kind: LoopKind;
  readonly changes: number;
  readonly timeouts: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Median duration of one pipeline cycle (runFlow) while idle or carrying one change. */
  readonly cycleP50Ms?: number;
  readonly cycles: number;
  readonly pipelinePeakRssMb?: number;
  readonly error?: string;
}

const TIMEOUT_MS = 30_000;
const LOOP_RUNNER = join(REPO_ROOT, 'bench', 'loop-runner.ts');

interface Org {
  readonly id: string;
  readonly body: Record<string, unknown>;
}

export async function benchLatency(options: LatencyOptions): Promise<LatencyResult[]> {
  const dir = join(options.workDir, 'latency');
  rmSync(dir, { recursive: true, force: true });
  const consents = exampleConsentSpec();
  const corpus = generateCorpus({
    dir: join(dir, 'seed'),
    resources: options.resources,
    kind: 'flow',
    ...(consents ? { consents } : {}),
  });
  const orgFile = corpus.files.find((f) => f.endsWith('Organization.ndjson'));
  if (!orgFile) throw new Error('the latency corpus has no Organizations');
  const orgs: Org[] = readFileSync(orgFile, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const body = JSON.parse(l) as Record<string, unknown>;
      return { id: String(body.id), body };
    });
  const expectedAccounts = (corpus.byType.Organization ?? 0) + (corpus.byType.Practitioner ?? 0);
  let ehr: Service | undefined;
  try {
    ehr = await startService(['sandbox', 'ehr', '--port', '0', '--seed', join(dir, 'seed')]);
    const seededAt = performance.now();
    const results: LatencyResult[] = [];
    for (const kind of options.kinds ?? ['runflow-loop', 'sluice-run']) {
      results.push(await measure(kind, ehr, orgs, expectedAccounts, options.changes, dir, seededAt));
    }
    return results;
  } finally {
    await ehr?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(
  kind: LoopKind,
  ehr: Service,
  orgs: readonly Org[],
  expectedAccounts: number,
  changes: number,
  dir: string,
  seededAt: number,
): Promise<LatencyResult> {
  let crm: Service | undefined;
  let runner: ReturnType<typeof startChild> | undefined;
  const cycles: number[] = [];
  try {
    crm = await startService(['sandbox', 'crm', '--port', '0', '--daily-limit', '1000000000']);
    const flowFile = writeBenchFlow(join(dir, `flow-${kind}.yaml`), {
      mode: 'search',
      stateDir: join(dir, `state-${kind}`),
      intervalSeconds: 1,
    });
    const env = benchFlowEnv(ehr.url, crm.url);
    const onLine = (line: string): void => {
      try {
        const summary = JSON.parse(line) as { durationMs?: unknown };
        if (typeof summary.durationMs === 'number') cycles.push(summary.durationMs);
      } catch {
        // not a summary line
      }
    };
    runner =
      kind === 'runflow-loop'
        ? startChild(LOOP_RUNNER, [flowFile], env, onLine)
        : startChild(SLUICE_BIN, ['run', flowFile, '--json', '--no-progress'], env, onLine);
    const probe = new CrmProbe(crm.url);
    progress(`latency ${kind}: initial sync`);
    const synced = performance.now();
    while ((await probe.count('Account')) < expectedAccounts) {
      if (performance.now() - synced > 600_000)
        throw new Error('the initial sync did not finish in 10 minutes');
      if (runner.exited() || runner.stderrTail().some((l) => l.includes('run failed'))) {
        throw new Error(`the pipeline failed: ${runner.stderrTail().slice(-3).join(' | ')}`);
      }
      await sleep(200);
    }
    // Every cycle re-reads the last `overlapSeconds` of changes: until the seed is older than that, each
    // cycle would re-read the whole freshly seeded sandbox, an artefact no running system has.
    const overlapMs = exampleOverlapSeconds() * 1000;
    const wait = seededAt + overlapMs + 2000 - performance.now();
    if (wait > 0) {
      progress(
        `latency ${kind}: waiting ${Math.ceil(wait / 1000)} s until the seed is older than the overlap`,
      );
      await sleep(wait);
    }
    const firstCycle = cycles.length;
    progress(`latency ${kind}: ${changes} changes`);
    const latencies: number[] = [];
    let timeouts = 0;
    for (let i = 0; i < changes; i++) {
      const org = orgs[i % orgs.length] as Org;
      const name = `Latency probe ${kind} ${i}`;
      // A random pause, so changes land at every phase of the pipeline's cycle.
      await sleep(Math.random() * 400);
      const started = performance.now();
      const put = await fetch(`${new URL(ehr.url).origin}/__sandbox/resources/Organization/${org.id}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify({ ...org.body, name }),
      });
      if (!put.ok) throw new Error(`the EHR sandbox refused the change: HTTP ${put.status}`);
      const externalId = sourceExternalId('epic', 'Organization', org.id);
      let seen = false;
      while (performance.now() - started < TIMEOUT_MS) {
        if ((await probe.field('Account', 'External_ID_vod__c', externalId, 'Name')) === name) {
          seen = true;
          break;
        }
        await sleep(5);
      }
      if (seen) latencies.push(performance.now() - started);
      else timeouts++;
    }
    const usage = procUsage(runner.pid);
    latencies.sort((a, b) => a - b);
    const steady = cycles.slice(firstCycle).sort((a, b) => a - b);
    return {
      kind,
      changes,
      timeouts,
      p50Ms: round(quantile(latencies, 0.5)),
      p95Ms: round(quantile(latencies, 0.95)),
      p99Ms: round(quantile(latencies, 0.99)),
      maxMs: round(latencies.at(-1) ?? Number.NaN),
      ...(steady.length > 0 ? { cycleP50Ms: round(quantile(steady, 0.5)) } : {}),
      cycles: steady.length,
      ...(usage.peakRssMb === undefined ? {} : { pipelinePeakRssMb: usage.peakRssMb }),
    };
  } catch (err) {
    return {
      kind,
      changes,
      timeouts: 0,
      p50Ms: Number.NaN,
      p95Ms: Number.NaN,
      p99Ms: Number.NaN,
      maxMs: Number.NaN,
      cycles: cycles.length,
      error: err instanceof Error ? err.message : String(err),
    };
  } finally {
    await runner?.stop();
    await crm?.stop();
  }
}
