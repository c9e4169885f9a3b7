import type { Organization } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoopSetup, startLoopSetup } from '../../src/testkit/loop-setup.ts';
import {
  parseJsonLine as json,
  runSluice,
  startSluice as startLoop,
} from '../../src/testkit/sluice-process.ts';

// `sluice run` in loop mode, as its own process, every second against the sandboxes: cycles that find
// nothing to do are neither printed as text nor recorded in the audit trail or the run history; the
// cycle that carries a change is, whole.

describe('sluice run in loop mode', () => {
  let setup: LoopSetup;
  beforeAll(async () => {
    setup = await startLoopSetup();
  }, 60_000);
  afterAll(() => setup?.close());

  it('records the first cycle and each cycle with a change, not the idle ones in between', async () => {
    const { ehr, crm, flowFile, env } = setup;
    const loop = startLoop(['run', flowFile, '--json', '--no-progress'], env);
    const summaries = () => loop.lines.map(json).filter((s) => s?.runId !== undefined);
    try {
      await loop.until(() => summaries().filter((s) => s?.idle === true).length >= 3, 'three idle cycles');
      expect(summaries()[0]?.idle).toBeUndefined();
      expect(Number(summaries()[0]?.created)).toBeGreaterThan(0);

      // A change in the EHR: the next cycle carries it and is recorded.
      const [id] = ehr.repo.recordedIds('Organization') as [string];
      const org = await ehr.repo.readResource<Organization>('Organization', id);
      await ehr.repo.updateResource<Organization>({ ...org, name: 'Loop Mode Renamed' });
      await loop.until(() => summaries().some((s) => Number(s?.updated) > 0), 'the cycle with the change');
      await loop.until(() => summaries().at(-1)?.idle === true, 'an idle cycle after the change');
    } finally {
      expect(await loop.stop()).toBe(0);
    }
    const recorded = summaries().filter((s) => s?.idle !== true);
    expect(recorded).toHaveLength(2);
    expect(crm.records('Account').some((a) => a.Name === 'Loop Mode Renamed')).toBe(true);

    // The audit trail and the run history hold exactly those two cycles.
    const audit = await runSluice(['audit', 'query', flowFile, '--kind', 'run-start', '--json'], env);
    expect(audit.code).toBe(0);
    const starts = audit.stdout
      .split('\n')
      .map(json)
      .filter((e) => e?.kind === 'run-start');
    expect(starts.map((e) => e?.runId).sort()).toEqual(recorded.map((s) => s?.runId).sort());
    const status = await runSluice(['status', flowFile, '--json'], env);
    const runs = (json(status.stdout.trim().split('\n').at(-1) ?? '') as { runs?: { runId: string }[] }).runs;
    expect(runs?.map((r) => r.runId).sort()).toEqual(recorded.map((s) => s?.runId).sort());
  }, 120_000);

  it('as text, prints the first cycle and says once that it is waiting for changes', async () => {
    const { flowFile, env } = setup;
    const loop = startLoop(['run', flowFile, '--no-progress'], env);
    try {
      await loop.until(() => loop.lines.some((l) => l.includes(': no changes at ')), 'the idle notice');
      await new Promise((r) => setTimeout(r, 2500));
    } finally {
      expect(await loop.stop()).toBe(0);
    }
    expect(loop.lines.filter((l) => l.startsWith('flow epic-to-veeva run '))).toHaveLength(1);
    expect(loop.lines.filter((l) => l.includes(': no changes at '))).toHaveLength(1);
  }, 120_000);
});
