/**
 * Preloaded into a benchmarked child (`node --import bench/rss-probe.ts …`): at exit it writes the
 * process's own peak RSS and CPU time (getrusage) as JSON to `$SLUICE_BENCH_PROBE_FILE`. Exact where
 * polling /proc could miss a peak in the last moments of a run.
 */
import { writeFileSync } from 'node:fs';

const file = process.env.SLUICE_BENCH_PROBE_FILE;
if (file) {
  process.once('exit', () => {
    const usage = process.resourceUsage();
    const cpuSec = (usage.userCPUTime + usage.systemCPUTime) / 1e6;
    // maxRSS is in KiB on Linux.
    writeFileSync(file, JSON.stringify({ maxRssMb: Math.round(usage.maxRSS / 1024), cpuSec }));
  });
}
