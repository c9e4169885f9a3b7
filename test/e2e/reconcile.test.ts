import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { buildFlowRuntime, flowRunOptions } from '../../src/engine/runtime/build-flow.ts';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { apiPath, crmFetch, crmToken } from '../../src/sandbox/crm/testing.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';
import { exampleFlowText, loadFlowAgainst, sandboxEnv } from '../../src/testkit/example-flow.ts';
import { lastJson, runSluice } from '../../src/testkit/sluice-process.ts';

// `sluice reconcile` over HTTP: the example flow delivers the provider directory, then a CRM user
// deletes one account (its addresses go with it) and edits another; reconciliation finds both.
describe('sluice reconcile (example flow, sandboxes)', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [join(SAMPLE_DATA_DIR, 'directory')] });
    crm = await startCrmSandbox();
    dir = mkdtempSync(join(tmpdir(), 'sluice-reconcile-e2e-'));
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds a CRM-deleted account with its addresses, and an account edited after the last write', async () => {
    const urls = { ehr: ehr.url, crm: crm.url };
    const text = exampleFlowText().replace(
      'resources: [Organization, Practitioner, Patient]',
      'resources: [Organization, Practitioner]',
    );
    const env = sandboxEnv(dir, urls);
    const flow = loadFlowAgainst(dir, text, urls, 'flow.yaml', env);
    const runtime = await buildFlowRuntime(flow);
    let ledger: number;
    try {
      const run = await runFlow({ ...flowRunOptions(flow, runtime), logger: pino({ level: 'silent' }) });
      expect(run.status).toBe('succeeded');
      ledger = await runtime.store.countLedger(flow.file.flow);
    } finally {
      await runtime.close();
    }
    const flowFile = join(dir, 'flow.yaml');
    const clean = lastJson((await runSluice(['reconcile', flowFile, '--json'], env)).stdout);
    expect(clean).toMatchObject({
      flow: flow.file.flow,
      clean: true,
      checked: ledger,
      missing: [],
      changed: [],
    });

    // A CRM user deletes an account that has addresses, and edits another one.
    const accounts = crm.records('Account').map((a) => String(a.Id));
    const addresses = crm.records('Address_vod__c');
    const withAddresses = accounts.find((id) => addresses.some((a) => a.Account_vod__c === id)) as string;
    const addressCount = addresses.filter((a) => a.Account_vod__c === withAddresses).length;
    const edited = accounts.find((id) => id !== withAddresses) as string;
    const token = await crmToken(crm);
    expect((await crmFetch(crm, token, 'DELETE', apiPath(`/sobjects/Account/${withAddresses}`))).status).toBe(
      204,
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(
      (await crmFetch(crm, token, 'PATCH', apiPath(`/sobjects/Account/${edited}`), { Phone: '555-0100' }))
        .status,
    ).toBe(204);

    const found = await runSluice(['reconcile', flowFile, '--json', '--tolerance-seconds', '0'], env);
    expect(found.code).toBe(0);
    const report = lastJson(found.stdout) as {
      clean: boolean;
      checked: number;
      objects: Record<string, { missing: number; changed: number }>;
      missing: { object: string; targetId: string; sourceRef: string }[];
      changed: { object: string; targetId: string; sourceRef: string }[];
      missingAction?: string;
    };
    expect(report.clean).toBe(false);
    expect(report.checked).toBe(ledger);
    expect(report.objects.Account?.missing).toBe(1);
    expect(report.objects.Address_vod__c?.missing).toBe(addressCount);
    expect(report.missing.find((f) => f.object === 'Account')).toMatchObject({ targetId: withAddresses });
    expect(report.missing.every((f) => /^(Organization|Practitioner)\//.test(f.sourceRef))).toBe(true);
    expect(report.objects.Account?.changed).toBe(1);
    expect(report.changed).toEqual([expect.objectContaining({ object: 'Account', targetId: edited })]);
    expect(report.missingAction).toContain('--repair');

    // As a person reads it, with what to do.
    const textReport = await runSluice(['reconcile', flowFile, '--tolerance-seconds', '0'], env);
    expect(textReport.stdout).toContain(`${1 + addressCount} missing, 1 changed there since`);
    expect(textReport.stdout).toContain(`Account ${withAddresses}`);
    expect(textReport.stdout).toContain('what to do:');

    // Repair: the deleted account's source record is read again and sent through the pipeline; the
    // account and its addresses are back, under new CRM ids, and nothing is missing any more.
    const repairRun = await runSluice(
      ['reconcile', flowFile, '--json', '--repair', '--tolerance-seconds', '0'],
      env,
    );
    expect(repairRun.code).toBe(0);
    const repaired = lastJson(repairRun.stdout) as {
      repair?: { refetched: number; goneAtSource: number; unresolved: number; run?: { status: string } };
    };
    expect(repaired.repair).toMatchObject({ refetched: 1, goneAtSource: 0, unresolved: 0 });
    expect(repaired.repair?.run).toMatchObject({ status: 'succeeded' });
    expect(crm.records('Account')).toHaveLength(accounts.length);
    expect(crm.records('Address_vod__c')).toHaveLength(addresses.length);
    const after = lastJson(
      (await runSluice(['reconcile', flowFile, '--json', '--tolerance-seconds', '0'], env)).stdout,
    );
    expect(after).toMatchObject({ checked: ledger, missing: [] });
    expect((after as { objects: Record<string, { missing: number }> }).objects.Account?.missing).toBe(0);
  }, 120_000);
});
