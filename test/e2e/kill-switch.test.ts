import type { Organization } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoopSetup, startLoopSetup } from '../../src/testkit/loop-setup.ts';
import { lastJson, parseJsonLine, runSluice, startSluice } from '../../src/testkit/sluice-process.ts';

// `sluice halt` / `sluice resume` as an operator uses them, each its own process, against the
// sandboxes: a halted flow sends nothing — not a new run, not a running loop — until it is resumed,
// and then exactly what was held back; both are in the audit trail with their reasons.
describe('the kill switch from the command line', () => {
  let setup: LoopSetup;
  beforeAll(async () => {
    setup = await startLoopSetup();
  }, 60_000);
  afterAll(() => setup?.close());

  it('holds every send while engaged, audited, and lets the held-back records through once resumed', async () => {
    const { ehr, crm, flowFile, env } = setup;
    const sluice = (...args: string[]) => runSluice(args, env);
    const halt = await sluice('halt', flowFile, '--reason', 'suspected-leak', '--json');
    expect(halt.code).toBe(0);
    expect(lastJson(halt.stdout)).toMatchObject({ halted: true, changed: true, reason: 'suspected-leak' });
    expect(lastJson((await sluice('halt', flowFile, '--reason', 'again', '--json')).stdout)).toMatchObject({
      changed: false,
      reason: 'suspected-leak',
    });
    const status = lastJson((await sluice('status', flowFile, '--json')).stdout);
    expect(status).toMatchObject({ halted: true, halt: { reason: 'suspected-leak' } });

    const refused = await sluice('run', flowFile, '--once', '--json');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('FLOW_HALTED');
    expect(crm.records().length).toBe(0);

    // A loop started while halted waits, saying so once.
    const loop = startSluice(['run', flowFile, '--json', '--no-progress'], env);
    const lines = () => loop.lines.map(parseJsonLine).filter((l) => l !== undefined);
    try {
      await loop.until(() => lines().some((l) => l.halted === true), 'the loop to say it is halted');
      await new Promise((r) => setTimeout(r, 2500));
      expect(crm.records().length).toBe(0);
      expect(lines().filter((l) => l.halted === true)).toHaveLength(1);

      const resume = await sluice('resume', flowFile, '--reason', 'false-alarm', '--json');
      expect(lastJson(resume.stdout)).toMatchObject({ halted: false, changed: true, reason: 'false-alarm' });
      await loop.until(() => lines().some((l) => Number(l.created) > 0), 'the first send after resuming');
      const accounts = crm.records('Account').length;
      expect(accounts).toBe(ehr.repo.recordedIds('Organization').length);

      // Engaged while the loop runs: a change made after it is not sent, then is, once resumed.
      await sluice('halt', flowFile, '--reason', 'mapping-error');
      await loop.until(
        () => lines().filter((l) => l.halted === true).length === 2,
        'the loop to notice the second halt',
      );
      const [id] = ehr.repo.recordedIds('Organization') as [string];
      const org = await ehr.repo.readResource<Organization>('Organization', id);
      await ehr.repo.updateResource<Organization>({ ...org, name: 'Renamed While Halted' });
      await new Promise((r) => setTimeout(r, 2500));
      const renamed = () => crm.records('Account').some((a) => a.Name === 'Renamed While Halted');
      expect(renamed()).toBe(false);
      await sluice('resume', flowFile, '--reason', 'fixed');
      await loop.until(renamed, 'the held-back change to arrive');
    } finally {
      expect(await loop.stop()).toBe(0);
    }
    expect(crm.records('Account').length).toBe(ehr.repo.recordedIds('Organization').length);

    // Every engage and release is audited with its reason and who did it; the trail verifies.
    const audit = await sluice('audit', 'query', flowFile, '--kind', 'kill-switch', '--json');
    const entries = audit.stdout
      .split('\n')
      .map(parseJsonLine)
      .filter((e) => e !== undefined) as { reason: string; details: { action: string; by: string } }[];
    expect(entries.map((e) => [e.details.action, e.reason])).toEqual([
      ['engage', 'suspected-leak'],
      ['release', 'false-alarm'],
      ['engage', 'mapping-error'],
      ['release', 'fixed'],
    ]);
    expect(entries.every((e) => e.details.by.length > 0)).toBe(true);
    expect((await sluice('audit', 'verify', flowFile)).code).toBe(0);
    expect(lastJson((await sluice('status', flowFile, '--json')).stdout)).toMatchObject({ halted: false });
    // Bad reasons are refused before anything changes.
    const bad = await sluice('halt', flowFile, '--reason', 'Has Spaces');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('CFG_ARGUMENTS_INVALID');
  }, 120_000);
});
