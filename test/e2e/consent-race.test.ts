import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Consent } from '@medplum/fhirtypes';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pseudonymize } from '../../src/core/anonymize/pseudonym.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { buildFlowRuntime, flowRunOptions } from '../../src/engine/runtime/build-flow.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { syntheaBundleDir } from '../../src/sandbox/ehr/testing.ts';
import { privacyConsent } from '../../src/testkit/consents.ts';
import { exampleFlowText, loadFlowAgainst } from '../../src/testkit/example-flow.ts';

const consentFor = (patientId: string): Consent =>
  privacyConsent(patientId, 'permit', { id: `race-${patientId}` });

const sfTime = (value: unknown): number => Date.parse(String(value).replace(/\+0000$/, 'Z'));

describe('consent revocations racing a send', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  const patientIds: string[] = [];
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [syntheaBundleDir()] });
    crm = await startCrmSandbox();
    crm.faults.add({ fault: { kind: 'latency', ms: 30 }, method: 'PATCH' });
    for (const id of ehr.repo.recordedIds('Patient')) {
      patientIds.push(id);
      await ehr.repo.createResource(consentFor(id), { assignedId: true });
    }
    dir = mkdtempSync(join(tmpdir(), 'sluice-race-'));
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('no record of a revoked person reaches the CRM after the revocation, and what was sent before is removed', async () => {
    const text = exampleFlowText()
      .replace('resources: [Organization, Practitioner, Patient]', 'resources: [Patient]')
      .replace('pageSize: 200', 'pageSize: 4')
      .replace('id: Organization/sluice-demo-crm', 'id: Organization/anyone')
      // The demo allowlist names the demo recipient; this test uses another one.
      .replace(/ {2}policy:\n(?: {4}.*\n)+/, '');
    const flow = loadFlowAgainst(dir, text, { ehr: ehr.url, crm: crm.url });
    const runtime = await buildFlowRuntime(flow);
    const run = () =>
      runFlow({
        ...flowRunOptions(flow, runtime),
        logger: pino({ level: 'silent' }),
      });

    // Revoke a third of the people at moments spread over the send.
    const revokedAt = new Map<string, number>();
    const victims = patientIds.filter((_, i) => i % 3 === 1);
    const revoker = (async () => {
      while (!crm.requests.entries().some((e) => e.path.includes('Patient_Profile__c'))) {
        await new Promise((r) => setTimeout(r, 5));
      }
      for (const id of victims) {
        await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 40)));
        const current = await ehr.repo.readResource<Consent>('Consent', `race-${id}`);
        await ehr.repo.updateResource<Consent>({ ...current, status: 'inactive' });
        revokedAt.set(id, Date.now());
      }
    })();
    const first = await run();
    await revoker;
    expect(first.status).toBe('succeeded');
    expect(first.delivered).toBeGreaterThan(0);
    // Some revocations landed after a person's send: the next run suppresses those.
    const second = await run();
    expect(second.status).toBe('succeeded');
    const store = SqliteStateStore.open(join(dir, 'state', 'epic-to-veeva.sqlite'));
    await runtime.close();

    const response = await fetch(
      `${crm.url}/__sandbox/records?object=Patient_Profile__c&includeDeleted=true`,
    );
    const { records } = (await response.json()) as { records: Record<string, unknown>[] };
    const byPseudonym = new Map(records.map((r) => [String(r.External_ID__c), r]));
    // When consent was checked for each person's send: the batch manifest records it.
    const checkedAt = new Map<string, number>();
    for (const batch of await store.listBatches(flow.file.flow, 1000)) {
      const envelope = JSON.parse(batch.envelope) as { createdAt: string; items: { sourceId: string }[] };
      for (const item of envelope.items) checkedAt.set(item.sourceId, Date.parse(envelope.createdAt));
    }
    let sentBeforeRevocation = 0;
    for (const id of victims) {
      const pseudonym = pseudonymize(flow.pseudonymKey, 'epic', 'Patient', id);
      const record = byPseudonym.get(pseudonym);
      if (!record) continue;
      sentBeforeRevocation++;
      // Sent only on a consent check made before the revocation committed; and suppressed since.
      expect(checkedAt.get(pseudonym)).toBeLessThan(revokedAt.get(id) as number);
      expect(record.IsDeleted).toBe(true);
      expect(sfTime(record.LastModifiedDate)).toBeGreaterThanOrEqual(sfTime(record.CreatedDate));
    }
    // The people who kept their consent are all there.
    const live = records.filter((r) => r.IsDeleted !== true);
    const keptIds = patientIds.filter((id) => !victims.includes(id));
    const keptPseudonyms = new Set<string>(
      keptIds.map((id) => pseudonymize(flow.pseudonymKey, 'epic', 'Patient', id)),
    );
    for (const r of live) expect(keptPseudonyms.has(String(r.External_ID__c))).toBe(true);
    expect(sentBeforeRevocation + victims.length).toBeGreaterThan(0);
    await store.close();
  }, 120_000);
});
