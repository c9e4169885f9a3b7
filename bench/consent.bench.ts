/**
 * Send-time consent check with 100k persons (target: p99 < 1 ms), two ways:
 * - the in-memory `ConsentStore` with every person loaded;
 * - the pipeline's `ConsentGate` over the SQLite state store, which keeps a bounded cache of people
 *   (20,000 by default) and reads a person's stored consents on a miss. Subjects are drawn from the
 *   whole population, so most checks miss the cache: the worst case of a large backfill;
 * - the same gate over the PostgreSQL state store (cluster mode), whose misses read a local mirror of
 *   the flow's consents brought up to date from the server when the gate loads (that load is timed
 *   too). Skipped, with the reason, when PostgreSQL (`SLUICE_BENCH_PG_URL`) does not answer.
 * Wired into `npm run bench` by bench/run.ts; runnable alone with `node bench/consent.bench.ts`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consentKey } from '../src/core/consent/model.ts';
import { ConsentStore } from '../src/core/consent/store.ts';
import { prng, syntheticConsents, syntheticSubject } from '../src/core/consent/synthetic.ts';
import { ConsentGate, DEFAULT_CONSENT_CACHE } from '../src/engine/consent/consent-gate.ts';
import { PostgresStateStore } from '../src/engine/store/pg-store.ts';
import { SqliteStateStore } from '../src/engine/store/sqlite-store.ts';
import type { StateStore } from '../src/engine/store/state-store.ts';
import { BENCH_PG_URL, benchSchema, dropSchema, postgresProblem } from './lib/cluster-services.ts';

export interface BenchResult {
  readonly name: string;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  /** How long the gate took to load (a local mirror brought up to date from PostgreSQL). */
  readonly loadMs?: number;
}

export async function benchConsent(
  options: { persons?: number; checks?: number } = {},
): Promise<BenchResult[]> {
  const results = [await benchStore(options), await benchGate(options, sqliteEngine)];
  const problem = await postgresProblem();
  if (problem === undefined) results.push(await benchGate(options, postgresEngine));
  else console.error(`consent bench: ConsentGate over PostgreSQL skipped: ${problem}`);
  return results;
}

/** A state store to fill and read, and how to clean up after it. */
interface Engine {
  readonly name: string;
  open(dir: string): Promise<{ state: StateStore; dispose(): Promise<void> }>;
}

const sqliteEngine: Engine = {
  name: 'SQLite',
  async open(dir) {
    const state = SqliteStateStore.open(join(dir, 'state.sqlite'));
    return { state, dispose: () => state.close() };
  },
};

const postgresEngine: Engine = {
  name: 'PostgreSQL',
  async open() {
    const schema = benchSchema();
    const state = await PostgresStateStore.open({ url: BENCH_PG_URL, schema });
    return {
      state,
      async dispose() {
        await state.close();
        const failed = await dropSchema(schema);
        if (failed) console.error(`consent bench: ${failed}`);
      },
    };
  },
};

function summarise(name: string, times: Float64Array, elapsedMs: number): BenchResult {
  const n = times.length;
  times.sort();
  const at = (q: number) => times[Math.min(n - 1, Math.floor(n * q))] as number;
  return {
    name,
    opsPerSec: Math.round((n / elapsedMs) * 1000),
    p50Ms: at(0.5),
    p95Ms: at(0.95),
    p99Ms: at(0.99),
  };
}

async function benchStore(options: { persons?: number; checks?: number }): Promise<BenchResult> {
  const persons = options.persons ?? 100_000;
  const checks = options.checks ?? 200_000;
  const store = new ConsentStore({ version: 'bench' });
  for (const consent of syntheticConsents(persons, 42)) store.upsert(consent);

  const rand = prng(7);
  const purposes = ['TREAT', 'HMARKT', 'HOPERAT', 'HRESCH'];
  const types = ['Observation', 'Patient', 'Practitioner', 'Communication'];
  const requests = Array.from({ length: 1024 }, (_, i) => ({
    purpose: purposes[i % purposes.length] as string,
    recipient: { id: 'Organization/r', role: 'PRCP' },
    resourceType: types[(i >> 2) % types.length] as string,
    securityLabels: i % 3 === 0 ? [{ code: 'PSY' }] : [],
    at: new Date(Date.UTC(2024, 0, 1) + Math.floor(rand() * 900) * 86_400_000),
  }));
  const subjects = Array.from({ length: 4096 }, () => syntheticSubject(Math.floor(rand() * persons * 1.1)));

  // Warm-up so the JIT has compiled the hot path before timing.
  for (let i = 0; i < 20_000; i++) store.checkAtSend(subjects[i & 4095] as string, requests[i & 1023]!);

  const times = new Float64Array(checks);
  const started = performance.now();
  for (let i = 0; i < checks; i++) {
    const t0 = performance.now();
    store.checkAtSend(subjects[i & 4095] as string, requests[i & 1023]!);
    times[i] = performance.now() - t0;
  }
  const elapsed = performance.now() - started;
  return summarise(`consent.checkAtSend, in memory (${persons / 1000}k persons)`, times, elapsed);
}

async function benchGate(
  options: { persons?: number; checks?: number },
  engine: Engine,
): Promise<BenchResult> {
  const persons = options.persons ?? 100_000;
  const checks = options.checks ?? 200_000;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-consent-'));
  const { state, dispose } = await engine.open(dir);
  try {
    const all = syntheticConsents(persons, 42);
    for (let i = 0; i < all.length; i += 5000) {
      await state.commitPage({
        flow: 'bench',
        stream: 'Consent',
        ledger: [],
        quarantine: [],
        consents: all.slice(i, i + 5000).map((c) => ({
          key: consentKey(c.source),
          subject: c.subject,
          state: JSON.stringify(c),
        })),
      });
    }
    const gate = new ConsentGate(
      {
        purpose: 'HOPERAT',
        recipient: { id: 'Organization/r', role: 'PRCP' },
        policyVersion: 'bench',
        defaultDecision: 'deny',
        refreshMs: 0,
      },
      'bench',
      { id: 'bench', secret: new Uint8Array(32).fill(3) },
    );
    const loadStarted = performance.now();
    await gate.load(state, 'bench');
    const loadMs = performance.now() - loadStarted;
    const rand = prng(11);
    const types = ['Observation', 'Patient', 'Practitioner', 'Communication'];
    const subject = () => syntheticSubject(Math.floor(rand() * persons * 1.1));
    const at = new Date(Date.UTC(2024, 6, 1));
    for (let i = 0; i < 20_000; i++) gate.check(subject(), types[i & 3] as string, at);
    const picks = Array.from({ length: checks }, subject);
    const times = new Float64Array(checks);
    const started = performance.now();
    for (let i = 0; i < checks; i++) {
      const t0 = performance.now();
      gate.check(picks[i] as string, types[i & 3] as string, at);
      times[i] = performance.now() - t0;
    }
    const elapsed = performance.now() - started;
    return {
      ...summarise(
        `ConsentGate over ${engine.name} (${persons / 1000}k persons, ${DEFAULT_CONSENT_CACHE / 1000}k cached)`,
        times,
        elapsed,
      ),
      loadMs: Math.round(loadMs),
    };
  } finally {
    await dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  console.log(JSON.stringify(await benchConsent(), null, 2));
}
