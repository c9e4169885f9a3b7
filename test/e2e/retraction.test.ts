import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Patient, Practitioner } from '@medplum/fhirtypes';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pseudonymize } from '../../src/core/anonymize/pseudonym.ts';
import { planFlow } from '../../src/engine/pipeline/plan.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { buildFlowRuntime, flowRunOptions } from '../../src/engine/runtime/build-flow.ts';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { seedRecords } from '../../src/sandbox/crm/testing.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { syntheaBundleDir } from '../../src/sandbox/ehr/testing.ts';
import { privacyConsent } from '../../src/testkit/consents.ts';
import { SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';
import { exampleFlowText, loadFlowAgainst, sandboxEnv } from '../../src/testkit/example-flow.ts';
import { lastJson, runSluice } from '../../src/testkit/sluice-process.ts';

// The example flow over HTTP on the shared Synthea patients: a patient the EHR later records as
// deceased, and one it merges into another record, leave the CRM; the surviving record stays.
describe('retraction of withheld records (example flow, sandboxes)', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [syntheaBundleDir()] });
    crm = await startCrmSandbox();
    for (const id of ehr.repo.recordedIds('Patient')) {
      await ehr.repo.createResource(privacyConsent(id, 'permit', { id: `c-${id}` }), { assignedId: true });
    }
    dir = mkdtempSync(join(tmpdir(), 'sluice-retract-e2e-'));
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('removes the profiles of a patient who died and of a merged record, audited by pseudonym', async () => {
    const text = exampleFlowText()
      .replace('resources: [Organization, Practitioner, Patient]', 'resources: [Patient]')
      .replace('id: Organization/sluice-demo-crm', 'id: Organization/anyone')
      .replace(/ {2}policy:\n(?: {4}.*\n)+/, '');
    const env = sandboxEnv(dir, { ehr: ehr.url, crm: crm.url });
    const flow = loadFlowAgainst(dir, text, { ehr: ehr.url, crm: crm.url }, 'flow.yaml', env);
    const runtime = await buildFlowRuntime(flow);
    const run = () => runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) });
    const pseudonymOf = (id: string) => pseudonymize(flow.pseudonymKey, 'epic', 'Patient', id);
    const profiles = () => new Set(crm.records('Patient_Profile__c').map((r) => String(r.External_ID__c)));
    try {
      const first = await run();
      expect(first.status).toBe('succeeded');
      const delivered = ehr.repo.recordedIds('Patient').filter((id) => profiles().has(pseudonymOf(id)));
      expect(delivered.length).toBeGreaterThan(10);
      expect(first.retracted).toBe(0);
      const [died, merged, survivor] = delivered as [string, string, string];

      await new Promise((r) => setTimeout(r, 10));
      const d = await ehr.repo.readResource<Patient>('Patient', died);
      await ehr.repo.updateResource<Patient>({ ...d, deceasedDateTime: '2026-11-30T10:00:00Z' });
      const m = await ehr.repo.readResource<Patient>('Patient', merged);
      await ehr.repo.updateResource<Patient>({
        ...m,
        active: false,
        link: [{ other: { reference: `Patient/${survivor}` }, type: 'replaced-by' }],
      });

      // The dry run says what the next run would remove, and removes nothing.
      const planned = await planFlow(flow, runtime, new AbortController().signal);
      expect(planned.streams.Patient?.wouldRetract).toEqual({ deceased: 1, merged: 1 });
      expect(profiles().size).toBe(delivered.length);

      const second = await run();
      expect(second.status).toBe('succeeded');
      expect(second.withholdReasons).toEqual({ deceased: 1, merged: 1 });
      expect(second.retracted).toBe(2);
      const now = profiles();
      expect(now.has(pseudonymOf(died))).toBe(false);
      expect(now.has(pseudonymOf(merged))).toBe(false);
      expect(now.has(pseudonymOf(survivor))).toBe(true);
      expect(now.size).toBe(delivered.length - 2);

      const retractions = (await runtime.audit.query({ runId: second.runId })).entries.filter(
        (e) => e.reason === 'withheld-retraction',
      );
      expect(retractions.map((e) => [e.subject, e.details.because]).sort()).toEqual(
        [
          [pseudonymOf(died), 'deceased'],
          [pseudonymOf(merged), 'merged'],
        ].sort(),
      );
      const trail = JSON.stringify((await runtime.audit.query({ runId: second.runId })).entries);
      for (const id of [died, merged, survivor]) expect(trail).not.toContain(id);
      expect((await runtime.audit.verify()).ok).toBe(true);

      expect(
        (await planFlow(flow, runtime, new AbortController().signal)).streams.Patient?.wouldRetract,
      ).toEqual({});
      // The run history says what left the CRM, as the summary did.
      const status = await runSluice(['status', join(dir, 'flow.yaml'), '--json'], env);
      const runs = lastJson(status.stdout).runs as { runId: string; removed?: number }[];
      expect(runs.find((r) => r.runId === second.runId)?.removed).toBe(2);
      expect(runs.find((r) => r.runId === first.runId)?.removed).toBe(0);

      // Nothing more to do on the next run.
      const third = await run();
      expect(third.retracted).toBe(0);
      expect(profiles().size).toBe(delivered.length - 2);

      // The survivor revokes consent: the dry run says a run would remove the profile, and one does.
      await ehr.repo.updateResource(privacyConsent(survivor, 'deny', { id: `c-${survivor}` }));
      const revoked = await planFlow(flow, runtime, new AbortController().signal);
      expect(revoked.streams.Patient?.wouldSuppress).toEqual({ 'consent-deny': 1 });
      const fourth = await run();
      expect(fourth.suppressed).toBe(1);
      expect(profiles().has(pseudonymOf(survivor))).toBe(false);
      expect(
        (await planFlow(flow, runtime, new AbortController().signal)).streams.Patient?.wouldSuppress,
      ).toEqual({});
    } finally {
      await runtime.close();
    }
  });
});

// A provider the EHR marks inactive is retracted from the CRM, but Veeva CRM will not delete an account
// a submitted call refers to: that removal is kept and shown, the flow goes on, and a later run makes
// it once the call is gone.
describe('a removal the CRM refuses (example flow, sandboxes)', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [join(SAMPLE_DATA_DIR, 'directory')] });
    crm = await startCrmSandbox();
    dir = mkdtempSync(join(tmpdir(), 'sluice-refused-e2e-'));
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the account a submitted call holds, retracts the rest, and removes it once the call is gone', async () => {
    const urls = { ehr: ehr.url, crm: crm.url };
    const text = exampleFlowText()
      .replace('resources: [Organization, Practitioner, Patient]', 'resources: [Organization, Practitioner]')
      .replace('      reason: inactive\n', '      reason: inactive\n      delivered: delete\n');
    expect(text).toContain('reason: inactive\n      delivered: delete');
    const env = sandboxEnv(dir, urls);
    const flow = loadFlowAgainst(dir, text, urls, 'flow.yaml', env);
    const runtime = await buildFlowRuntime(flow);
    const run = () => runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) });
    const accountOf = async (id: string) =>
      (await runtime.store.ledgerBySource(flow.file.flow, `Practitioner/${id}`)).find(
        (e) => e.object === 'Account',
      )?.targetId;
    const liveAccounts = () => new Set(crm.records('Account').map((a) => String(a.Id)));
    try {
      expect((await run()).status).toBe('succeeded');
      const delivered: string[] = [];
      for (const id of ehr.repo.recordedIds('Practitioner'))
        if ((await accountOf(id)) !== undefined) delivered.push(id);
      expect(delivered.length).toBeGreaterThan(2);
      const [held, free] = delivered as [string, string];
      const heldAccount = (await accountOf(held)) as string;
      const freeAccount = (await accountOf(free)) as string;
      await seedRecords(crm, 'Call2_vod__c', [
        { Account_vod__c: heldAccount, Status_vod__c: 'Submitted_vod', Call_Date_vod__c: '2026-11-30' },
      ]);

      await new Promise((r) => setTimeout(r, 10));
      for (const id of [held, free]) {
        const p = await ehr.repo.readResource<Practitioner>('Practitioner', id);
        await ehr.repo.updateResource<Practitioner>({ ...p, active: false });
      }
      const second = await run();
      expect(second.status).toBe('succeeded');
      expect(second.withholdReasons).toEqual({ inactive: 2 });
      expect(second.removals).toEqual({ refused: 1, completed: 0, pending: 1 });
      expect(liveAccounts().has(heldAccount)).toBe(true);
      expect(liveAccounts().has(freeAccount)).toBe(false);
      // Audited as what happened: its addresses went (a retraction), its account stayed (refused).
      const heldEntries = (await runtime.audit.query({ runId: second.runId, source: `Practitioner/${held}` }))
        .entries;
      expect(heldEntries.map((e) => e.reason).sort()).toEqual([
        'inactive',
        'removal-refused',
        'withheld-retraction',
      ]);

      // The dry run says a run would try it again; the operator sees what the CRM keeps, why, and what it said.
      expect((await planFlow(flow, runtime, new AbortController().signal)).refusedRemovals).toBe(1);
      const status = await runSluice(['status', join(dir, 'flow.yaml'), '--json'], env);
      expect(lastJson(status.stdout).refusedRemovals).toMatchObject({
        count: 1,
        items: [
          {
            object: 'Account',
            targetId: heldAccount,
            sourceRef: `Practitioner/${held}`,
            cause: 'withheld-retraction',
            because: 'inactive',
            codes: ['DELETE_FAILED'],
            attempts: 1,
          },
        ],
      });
      // The record's lineage says its account is still at the CRM, and why.
      const lineage = lastJson(
        (await runSluice(['explain', join(dir, 'flow.yaml'), `Practitioner/${held}`, '--json'], env)).stdout,
      ) as { target: { object: string; targetId: string; removalRefused?: unknown }[] };
      expect(lineage.target).toEqual([
        expect.objectContaining({
          object: 'Account',
          targetId: heldAccount,
          removalRefused: expect.objectContaining({
            cause: 'withheld-retraction',
            because: 'inactive',
            codes: ['DELETE_FAILED'],
            attempts: 1,
          }),
        }),
      ]);
      const text = await runSluice(['status', join(dir, 'flow.yaml')], env);
      expect(text.stdout).toContain('1 removal the CRM refused');
      expect(text.stdout).toContain(
        `Account ${heldAccount} (Practitioner/${held}) withheld-retraction:inactive: DELETE_FAILED`,
      );

      // The call is removed at the CRM: the next run finishes the retraction.
      await fetch(`${crm.url}/__sandbox/records?object=Call2_vod__c`, { method: 'DELETE' });
      const third = await run();
      expect(third.removals).toEqual({ refused: 0, completed: 1, pending: 0 });
      expect(liveAccounts().has(heldAccount)).toBe(false);
      const entries = (await runtime.audit.query({ source: `Practitioner/${held}` })).entries;
      expect(entries.map((e) => e.reason)).toEqual(
        expect.arrayContaining(['removal-refused', 'withheld-retraction']),
      );
      expect((await runtime.audit.verify()).ok).toBe(true);
      expect((await planFlow(flow, runtime, new AbortController().signal)).refusedRemovals).toBeUndefined();
      const after = await runSluice(['status', join(dir, 'flow.yaml'), '--json'], env);
      expect(lastJson(after.stdout).refusedRemovals).toEqual({ count: 0, items: [] });
    } finally {
      await runtime.close();
    }
  });
});
