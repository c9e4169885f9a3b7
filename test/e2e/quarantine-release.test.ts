import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type DemoRun, runDemo } from '../../src/demo/run-demo.ts';
import { RECORD_TYPES } from '../../src/sandbox/crm/index.ts';
import { apiPath, crmFetch, crmToken, seedRecords } from '../../src/sandbox/crm/testing.ts';
import { REPO_ROOT } from '../../src/testkit/data.ts';

const BIN = join(REPO_ROOT, 'bin', 'sluice.js');
const FLOW = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');

function sluice(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const last = (text: string) => JSON.parse(text.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;

/** Puts an Organization into the demo flow's quarantine as a run (`runId`) would have; the entry. */
async function holdBack(demo: DemoRun, runId: string, code: string, resource: Record<string, unknown>) {
  await demo.store.commitPage({
    flow: 'epic-to-veeva',
    stream: 'Organization',
    ledger: [],
    quarantine: [
      {
        flow: 'epic-to-veeva',
        runId,
        stream: 'Organization',
        stage: code === 'REC_OUT_OF_ORDER' ? 'parse' : 'deliver',
        code,
        issues: [],
        origin: `a page of run ${runId}`,
        sourceRef: `Organization/${String(resource.id)}`,
        payload: JSON.stringify(resource),
      },
    ],
  });
  return (await demo.store.listQuarantine({ flow: 'epic-to-veeva' })).find((e) => e.runId === runId);
}

describe('quarantine release and discard', () => {
  let demo: DemoRun;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-release-'));
  const key = randomBytes(32).toString('base64');
  afterAll(async () => {
    await demo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a record still failing stays; one whose cause was fixed is released and delivered; a discard is audited', async () => {
    process.env.SLUICE_PSEUDONYM_KEY = key;
    let duplicateIds: string[] = [];
    let externalId = '';
    demo = await runDemo({
      stateDir: dir,
      // The CRM already holds two Accounts with one organisation's external id: its upsert is ambiguous.
      prepare: async (ehr, crm) => {
        const orgId = ehr.repo.recordedIds('Organization')[0] as string;
        externalId = `epic:Organization/${orgId}`;
        duplicateIds = await seedRecords(crm, 'Account', [
          { Name: 'Duplicate A', RecordTypeId: RECORD_TYPES.hco, External_ID_vod__c: externalId },
          { Name: 'Duplicate B', RecordTypeId: RECORD_TYPES.hco, External_ID_vod__c: externalId },
        ]);
      },
    });
    delete process.env.SLUICE_PSEUDONYM_KEY;
    expect(demo.summary.quarantineReasons.TGT_AMBIGUOUS_MATCH).toBe(1);
    const env = {
      SLUICE_EHR_URL: demo.ehr.url,
      SLUICE_CRM_URL: demo.crm.url,
      SLUICE_PSEUDONYM_KEY: key,
      SLUICE_STATE_DIR: dir,
    };
    const entries = await demo.store.listQuarantine({ flow: 'epic-to-veeva' });
    const ambiguous = entries.find((e) => e.code === 'TGT_AMBIGUOUS_MATCH');
    const badNpi = entries.find((e) => e.code === 'MAP_INVALID_IDENTIFIER');
    expect(ambiguous && badNpi).toBeTruthy();

    // Releasing a record whose NPI is still malformed changes nothing.
    const still = await sluice(['quarantine', 'release', FLOW, badNpi?.id as string, '--json'], env);
    expect(still.code).toBe(1);
    expect(last(still.stdout)).toMatchObject({ released: false, code: 'MAP_INVALID_IDENTIFIER' });
    expect((await demo.store.getQuarantine(badNpi?.id as string))?.status).toBe('open');

    // The duplicate is merged away in the CRM; the release now delivers the organisation.
    const token = await crmToken(demo.crm);
    const removed = await crmFetch(
      demo.crm,
      token,
      'DELETE',
      apiPath(`/sobjects/Account/${duplicateIds[1]}`),
    );
    expect(removed.status).toBe(204);
    const released = await sluice(['quarantine', 'release', FLOW, ambiguous?.id as string, '--json'], env);
    expect(released.code, released.stderr).toBe(0);
    expect(last(released.stdout)).toMatchObject({ released: true, status: 'succeeded', quarantined: 0 });
    expect((await demo.store.getQuarantine(ambiguous?.id as string))?.status).toBe('released');
    const account = demo.crm.records('Account').filter((a) => a.External_ID_vod__c === externalId);
    expect(account).toHaveLength(1);
    expect(account[0]?.Name).not.toBe('Duplicate A');

    // Discarding needs a reason code and is audited.
    const discarded = await sluice(
      ['quarantine', 'discard', FLOW, badNpi?.id as string, '--reason', 'test-data', '--json'],
      env,
    );
    expect(discarded.code, discarded.stderr).toBe(0);
    expect((await demo.store.getQuarantine(badNpi?.id as string))?.status).toBe('discarded');
    const audited = await sluice(['audit', 'query', FLOW, '--kind', 'discard', '--json'], env);
    expect(last(audited.stdout)).toMatchObject({
      kind: 'discard',
      reason: 'test-data',
      details: { quarantineId: badNpi?.id, recordSha256: badNpi?.payloadSha256 },
    });
    const releases = await sluice(['audit', 'query', FLOW, '--kind', 'release', '--json'], env);
    expect(last(releases.stdout)).toMatchObject({
      kind: 'release',
      reason: 'TGT_AMBIGUOUS_MATCH',
      details: { quarantineId: ambiguous?.id, recordSha256: ambiguous?.payloadSha256 },
    });

    // Closed entries keep what happened and the record's digest, not the record.
    for (const closed of [ambiguous, badNpi]) {
      const shown = await sluice(
        ['quarantine', 'show', FLOW, closed?.id as string, '--with-payload', '--json'],
        env,
      );
      expect(shown.code, shown.stderr).toBe(0);
      expect(last(shown.stdout)).toMatchObject({ payloadKept: false, payloadSha256: closed?.payloadSha256 });
      expect(last(shown.stdout).payload).toBeUndefined();
      expect(shown.stderr).toContain('erased');
      expect(await demo.store.readQuarantinePayload(closed?.id as string)).toBeUndefined();
    }
    const again = await sluice(['quarantine', 'release', FLOW, badNpi?.id as string, '--json'], env);
    expect(last(again.stdout)).toMatchObject({ error: { code: 'QUARANTINE_NOT_FOUND' } });

    // An old version (a replayed export) held back after a newer one was delivered is never
    // released over it.
    const orgId = demo.ehr.repo.recordedIds('Organization')[1] as string;
    const stale = await holdBack(demo, 'replayed-export', 'REC_OUT_OF_ORDER', {
      resourceType: 'Organization',
      id: orgId,
      meta: { versionId: '0', lastUpdated: '2020-01-01T00:00:00Z' },
      name: 'Old Name',
    });
    const refused = await sluice(['quarantine', 'release', FLOW, stale?.id as string, '--json'], env);
    expect(refused.code).toBe(1);
    expect(last(refused.stdout)).toMatchObject({ error: { code: 'QUARANTINE_SUPERSEDED' } });
    expect((await demo.store.getQuarantine(stale?.id as string))?.status).toBe('open');
    expect(demo.crm.records('Account').some((a) => a.Name === 'Old Name')).toBe(false);

    // A release whose run cannot reach the CRM leaves the entry open, its record kept (last: the
    // failures open the endpoint's breaker, which the state keeps across runs).
    const held = {
      resourceType: 'Organization',
      id: 'held-back-org',
      meta: { versionId: '1', lastUpdated: new Date().toISOString() },
      active: true,
      name: 'Held Back Clinic',
    };
    const heldEntry = await holdBack(demo, 'held', 'TGT_AMBIGUOUS_MATCH', held);
    const unreachable = await sluice(['quarantine', 'release', FLOW, heldEntry?.id as string, '--json'], {
      ...env,
      SLUICE_CRM_URL: 'http://127.0.0.1:9',
    });
    expect(unreachable.code).toBe(1);
    expect(last(unreachable.stdout)).toMatchObject({ released: false, status: 'failed' });
    expect(await demo.store.getQuarantine(heldEntry?.id as string)).toMatchObject({
      status: 'open',
      payloadKept: true,
    });
    expect(await demo.store.readQuarantinePayload(heldEntry?.id as string)).toBe(JSON.stringify(held));
  }, 120_000);
});
