import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Practitioner } from '@medplum/fhirtypes';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFlow } from '../../src/engine/config/load-flow.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import type { RunSummary } from '../../src/engine/pipeline/summary.ts';
import { buildFlowRuntime, flowRunOptions } from '../../src/engine/runtime/build-flow.ts';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';
import { exampleFlowText, loadFlowAgainst } from '../../src/testkit/example-flow.ts';

/** The example flow, without the consent stage (these tests are about change capture), in a mode. */
function flowText(mode: 'search' | 'bulk'): string {
  return (
    exampleFlowText()
      .replace(
        'resources: [Organization, Practitioner, Patient]',
        `resources: [Organization, Practitioner]\n  mode: ${mode}`,
      )
      .replace(/ {2}consent:\n(?: {4}.*\n)+/, '')
      // Its allowlist names the consent recipient; these tests are about other things.
      .replace(/ {2}policy:\n(?: {4}.*\n)+/, '')
  );
}

for (const mode of ['search', 'bulk'] as const) {
  describe(`differential sync (${mode})`, () => {
    let ehr: EhrSandbox;
    let crm: CrmSandbox;
    let dir: string;
    let run: () => Promise<RunSummary>;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ehr = await startEhrSandbox({ seed: [join(SAMPLE_DATA_DIR, 'directory')] });
      crm = await startCrmSandbox();
      dir = mkdtempSync(join(tmpdir(), `sluice-diff-${mode}-`));
      const flow = loadFlowAgainst(dir, flowText(mode), { ehr: ehr.url, crm: crm.url });
      const runtime = await buildFlowRuntime(flow);
      run = () => runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) });
      close = () => runtime.close();
    }, 60_000);
    afterAll(async () => {
      await close?.();
      await Promise.all([ehr?.close(), crm?.close()]);
      rmSync(dir, { recursive: true, force: true });
    });

    it('sends everything once, then exactly what was edited, deleted and re-added', async () => {
      const first = await run();
      expect(first.status).toBe('succeeded');
      const accountsBefore = crm.records('Account').length;
      expect(accountsBefore).toBeGreaterThan(100);

      const again = await run();
      expect(again.delivered).toBe(0);
      expect(again.deleted).toBe(0);

      // Edit two practitioners, delete a third, delete and re-add a fourth.
      const ids = ehr.repo
        .recordedIds('Practitioner')
        .filter((id) =>
          crm.records('Account').some((a) => a.External_ID_vod__c === `epic:Practitioner/${id}`),
        );
      const [edit1, edit2, gone, readded] = ids as [string, string, string, string];
      await new Promise((r) => setTimeout(r, 10));
      for (const id of [edit1, edit2]) {
        const p = await ehr.repo.readResource<Practitioner>('Practitioner', id);
        await ehr.repo.updateResource<Practitioner>({
          ...p,
          name: [{ ...p.name?.[0], family: `Renamed${id.slice(0, 4)}` }],
        });
      }
      await ehr.repo.deleteResource('Practitioner', gone);
      const original = await ehr.repo.readResource<Practitioner>('Practitioner', readded);
      await ehr.repo.deleteResource('Practitioner', readded);
      await ehr.repo.updateResource<Practitioner>({ ...original, meta: {} });

      const before = new Map(
        [...crm.records('Account'), ...crm.records('Address_vod__c')].map((r) => [r.Id, r.LastModifiedDate]),
      );
      const third = await run();
      expect(third.status).toBe('succeeded');
      const names = new Map(crm.records('Account').map((a) => [String(a.External_ID_vod__c), a]));
      expect(String(names.get(`epic:Practitioner/${edit1}`)?.LastName)).toMatch(/^Renamed/);
      expect(String(names.get(`epic:Practitioner/${edit2}`)?.LastName)).toMatch(/^Renamed/);
      // Exactly the edited and re-added practitioners were written (each an Account and its Address:
      // the lineage field names the source version); nothing else was touched.
      expect(third.updated).toBe(6);
      expect(third.created).toBe(0);
      const touched = [...crm.records('Account'), ...crm.records('Address_vod__c')].filter(
        (r) => before.get(r.Id) !== r.LastModifiedDate,
      );
      const owners = new Set(
        touched.map((r) => String(r.External_ID_vod__c ?? '').replace(/#address\/\d+$/, '')),
      );
      expect([...owners].sort()).toEqual(
        [edit1, edit2, readded].map((id) => `epic:Practitioner/${id}`).sort(),
      );
      expect(names.has(`epic:Practitioner/${readded}`)).toBe(true);
      if (mode === 'bulk') {
        // Bulk export lists deletions: the deleted practitioner's account and address are removed.
        expect(names.has(`epic:Practitioner/${gone}`)).toBe(false);
        expect(third.deleted).toBeGreaterThanOrEqual(1);
        expect(crm.records('Account').length).toBe(accountsBefore - 1);
      } else {
        // FHIR search cannot see deletions; they stay until a bulk run (documented).
        expect(third.deleted).toBe(0);
      }
    }, 60_000);
  });
}

describe('search checkpoints on the time the server answered', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  const runtimes: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [join(SAMPLE_DATA_DIR, 'directory')] });
    crm = await startCrmSandbox();
    dir = mkdtempSync(join(tmpdir(), 'sluice-diff-quiet-'));
  }, 60_000);
  afterAll(async () => {
    for (const close of runtimes) await close();
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A runner of the search flow with a one-second overlap, its own state, server time on or off. */
  async function runner(name: string, serverTime: boolean): Promise<() => Promise<RunSummary>> {
    const text = flowText('search').replace(
      '  pageSize: 200\n',
      `  pageSize: 50\n  overlapSeconds: 1\n  serverTimeCheckpoints: ${serverTime}\n`,
    );
    expect(text).toContain('overlapSeconds: 1');
    writeFileSync(join(dir, `${name}.yaml`), text);
    const flow = loadFlow(join(dir, `${name}.yaml`), {
      env: {
        SLUICE_EHR_URL: ehr.url,
        SLUICE_CRM_URL: crm.url,
        SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
        SLUICE_STATE_DIR: join(dir, name),
      },
    });
    const runtime = await buildFlowRuntime(flow);
    runtimes.push(() => runtime.close());
    return () => runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) });
  }

  it('a quiet stream stops re-reading its last burst once the overlap has passed; a change still comes', async () => {
    const seeded = ehr.repo.recordCount('Organization') + ehr.repo.recordCount('Practitioner');
    const byServerTime = await runner('server-time', true);
    const byRecords = await runner('records-only', false);
    expect((await byServerTime()).read).toBe(seeded);
    expect((await byRecords()).read).toBe(seeded);
    // The seed was stamped in one burst. Once it is older than the overlap, a search that reads from
    // the newest record re-reads the whole burst each cycle; one that reads from the time the server
    // last answered reads nothing (after one cycle that moves the checkpoint past the burst).
    await new Promise((r) => setTimeout(r, 2_100));
    await byServerTime();
    const quiet = await byServerTime();
    expect(quiet.status).toBe('succeeded');
    expect(quiet.read).toBe(0);
    const again = await byRecords();
    expect(again.read).toBe(seeded);
    expect(again.delivered).toBe(0);

    // A change made now is read by the next cycle, and only it (with the ones stamped with it).
    const id = ehr.repo.recordedIds('Practitioner')[0] as string;
    const p = await ehr.repo.readResource<Practitioner>('Practitioner', id);
    await ehr.repo.updateResource<Practitioner>({ ...p, name: [{ ...p.name?.[0], family: 'Quietly' }] });
    const changed = await byServerTime();
    expect(changed.read).toBe(1);
    expect(changed.updated).toBeGreaterThanOrEqual(1);
    const account = crm.records('Account').find((a) => a.External_ID_vod__c === `epic:Practitioner/${id}`);
    expect(account?.LastName).toBe('Quietly');
    // The checkpoint is the server's time, not past the local clock.
    const position = changed.checkpoints.Practitioner as string;
    expect(Date.parse(position)).toBeGreaterThanOrEqual(Date.parse(p.meta?.lastUpdated as string));
    expect(Date.parse(position)).toBeLessThanOrEqual(Date.now());
  }, 60_000);
});
