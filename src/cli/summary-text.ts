import type { RunSummary } from '../engine/pipeline/summary.ts';

/** A run summary as a person reads it. Counts and codes only. */
export function formatSummary(s: RunSummary): string {
  const lines = [
    `flow ${s.flow} run ${s.runId}: ${s.status} in ${(s.durationMs / 1000).toFixed(1)} s`,
    `  read ${s.read}  delivered ${s.delivered} (created ${s.created}, updated ${s.updated})  unchanged ${s.unchanged}`,
    `  quarantined ${s.quarantined}  withheld ${s.withheld}  batches ${s.batches}`,
  ];
  for (const [stream, c] of Object.entries(s.byStream)) {
    lines.push(
      `  ${stream.padEnd(14)} read ${c.read}, delivered ${c.delivered}, unchanged ${c.unchanged}, quarantined ${c.quarantined}, withheld ${c.withheld}`,
    );
  }
  const removed = [
    s.deleted > 0 ? `deleted ${s.deleted} (source deletions)` : '',
    s.suppressed > 0 ? `suppressed ${s.suppressed} (consent no longer permits)` : '',
    s.retracted > 0 ? `retracted ${s.retracted} (withheld now, delivered before)` : '',
  ].filter((x) => x !== '');
  if (removed.length > 0) lines.push(`  removed at the target: ${removed.join(', ')}`);
  const r = s.removals;
  if (r && r.refused + r.pending > 0) {
    const parts = [
      r.refused > 0 ? `${r.refused} refused in this run` : '',
      r.completed > 0 ? `${r.completed} refused before, done now` : '',
      `${r.pending} still at the target, tried again by later runs`,
    ].filter((x) => x !== '');
    lines.push(
      `  removals the CRM refused: ${parts.join(', ')} (\`sluice status\` lists them; unlock or fix them in the CRM)`,
    );
  } else if (r && r.completed > 0) {
    lines.push(`  removals the CRM refused before: ${r.completed} done now, none waiting`);
  }
  const reasons = Object.entries(s.quarantineReasons);
  if (reasons.length > 0)
    lines.push(`  quarantine reasons: ${reasons.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const withheld = Object.entries(s.withholdReasons);
  if (withheld.length > 0)
    lines.push(`  withhold reasons: ${withheld.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const fc = s.flowControl;
  if (fc) {
    lines.push(
      `  flow control: rate ${fc.rate}/s, concurrency ${fc.limit}, breaker ${fc.breakerState}, waited ${Math.round(Number(fc.waitMsTotal ?? 0))} ms${fc.quotaUsage === undefined ? '' : `, quota ${(Number(fc.quotaUsage) * 100).toFixed(2)}% used`}`,
    );
  }
  if (s.error) lines.push(`  error ${s.error.code}: ${s.error.message}`, `  what to do: ${s.error.action}`);
  return lines.join('\n');
}
