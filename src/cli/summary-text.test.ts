import { describe, expect, it } from 'vitest';
import type { RunSummary } from '../engine/pipeline/summary.ts';
import { formatSummary } from './summary-text.ts';

const base: RunSummary = {
  flow: 'f',
  runId: 'r',
  status: 'succeeded',
  startedAt: '2026-12-07T00:00:00.000Z',
  finishedAt: '2026-12-07T00:00:01.000Z',
  durationMs: 1000,
  read: 10,
  delivered: 4,
  created: 4,
  updated: 0,
  unchanged: 0,
  skipped: 0,
  deleted: 0,
  suppressed: 0,
  retracted: 0,
  quarantined: 0,
  withheld: 6,
  batches: 1,
  byStream: {},
  quarantineReasons: {},
  withholdReasons: { deceased: 6 },
  checkpoints: {},
};

describe('formatSummary', () => {
  it('says what was removed at the target, and why, only when something was', () => {
    expect(formatSummary(base)).not.toContain('removed at the target');
    const text = formatSummary({ ...base, deleted: 2, suppressed: 1, retracted: 3 });
    expect(text).toContain(
      'removed at the target: deleted 2 (source deletions), suppressed 1 (consent no longer permits), retracted 3 (withheld now, delivered before)',
    );
    expect(formatSummary({ ...base, retracted: 1 })).toContain(
      'removed at the target: retracted 1 (withheld now, delivered before)',
    );
  });

  it('says which removals the CRM refused and that they wait, only when there are any', () => {
    expect(formatSummary(base)).not.toContain('refused');
    const text = formatSummary({ ...base, removals: { refused: 2, completed: 0, pending: 3 } });
    expect(text).toContain(
      'removals the CRM refused: 2 refused in this run, 3 still at the target, tried again by later runs',
    );
    expect(text).toContain('`sluice status` lists them');
    expect(formatSummary({ ...base, removals: { refused: 0, completed: 1, pending: 0 } })).toContain(
      'removals the CRM refused before: 1 done now, none waiting',
    );
  });
});
