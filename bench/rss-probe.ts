/**
 * Preloaded into a benchmarked child (`node --import bench/rss-probe.ts …`): at exit it writes the
 * process's own peak RSS and CPU time (getrusage) as JSON to `$SLUICE_BENCH_PROBE_FILE`. Exact where
 * polling /proc could miss a peak in the last moments of a run.
 *
 * It also records the live heap: the heap in use right after each full (mark-compact) collection, the
 * memory the process really holds. RSS also counts garbage V8 has not collected yet, so the live heap
 * is what shows whether memory grows with the volume.
 */
import { writeFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';

const file = process.env.SLUICE_BENCH_PROBE_FILE;
if (file) {
  let maxLiveHeap = 0;
  let fullGcs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue;
      fullGcs++;
      maxLiveHeap = Math.max(maxLiveHeap, process.memoryUsage().heapUsed);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  process.once('exit', () => {
    const usage = process.resourceUsage();
    const cpuSec = (usage.userCPUTime + usage.systemCPUTime) / 1e6;
    // maxRSS is in KiB on Linux.
    writeFileSync(
      file,
      JSON.stringify({
        maxRssMb: Math.round(usage.maxRSS / 1024),
        cpuSec,
        ...(fullGcs > 0 ? { maxLiveHeapMb: Math.round(maxLiveHeap / 2 ** 20), fullGcs } : {}),
      }),
    );
  });
}
