/**
 * Send-time consent check with 100k persons loaded (target: p99 < 1 ms). Wired into `npm run bench` by
 * bench/run.ts; runnable alone with `node bench/consent.bench.ts`.
 */
import { ConsentStore } from '../src/core/consent/store.ts';
import { prng, syntheticConsents, syntheticSubject } from '../src/core/consent/synthetic.ts';

export interface BenchResult {
  readonly name: string;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
}

export async function benchConsent(
  options: { persons?: number; checks?: number } = {},
): Promise<BenchResult> {
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
  times.sort();
  const at = (q: number) => times[Math.min(checks - 1, Math.floor(checks * q))] as number;
  return {
    name: 'consent.checkAtSend (100k persons)',
    opsPerSec: Math.round((checks / elapsed) * 1000),
    p50Ms: at(0.5),
    p95Ms: at(0.95),
    p99Ms: at(0.99),
  };
}

if (import.meta.main) {
  console.log(JSON.stringify(await benchConsent(), null, 2));
}
