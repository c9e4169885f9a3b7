import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type DemoOptions, type DemoRun, runDemo } from '../../src/demo/run-demo.ts';
import { RECORD_TYPES } from '../../src/sandbox/crm/index.ts';
import { apiPath, crmFetch, crmToken, seedRecords } from '../../src/sandbox/crm/testing.ts';
import { REPO_ROOT } from '../../src/testkit/data.ts';
import { lastJson, runSluice } from '../../src/testkit/sluice-process.ts';

const FLOW = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');

const sluice = runSluice;
const last = lastJson;

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

/**
 * The demo flow run once with its own state folder and pseudonym key (both removed after the suite);
 * resolves with the run and the environment the CLI needs to act on its state.
 */
function demoSuite(
  prefix: string,
): (prepare?: DemoOptions['prepare']) => Promise<{ demo: DemoRun; env: Record<string, string> }> {
  let demo: DemoRun | undefined;
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const key = randomBytes(32).toString('base64');
  afterAll(async () => {
    await demo?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return async (prepare) => {
    process.env.SLUICE_PSEUDONYM_KEY = key;
    try {
      demo = await runDemo({ stateDir: dir, ...(prepare ? { prepare } : {}) });
    } finally {
      delete process.env.SLUICE_PSEUDONYM_KEY;
    }
    const env = {
      SLUICE_EHR_URL: demo.ehr.url,
      SLUICE_CRM_URL: demo.crm.url,
      SLUICE_PSEUDONYM_KEY: key,
      SLUICE_STATE_DIR: dir,
    };
    return { demo, env };
  };
}

describe('quarantine release and discard', () => {
  const start = demoSuite('sluice-release-');

  it('a record still failing stays; one whose cause was fixed is released and delivered; a discard is audited', async () => {
    let duplicateIds: string[] = [];
    let externalId = '';
    // The CRM already holds two Accounts with one organisation's external id: its upsert is ambiguous.
    const { demo, env } = await start(async (ehr, crm) => {
      const orgId = ehr.repo.recordedIds('Organization')[0] as string;
      externalId = `epic:Organization/${orgId}`;
      duplicateIds = await seedRecords(crm, 'Account', [
        { Name: 'Duplicate A', RecordTypeId: RECORD_TYPES.hco, External_ID_vod__c: externalId },
        { Name: 'Duplicate B', RecordTypeId: RECORD_TYPES.hco, External_ID_vod__c: externalId },
      ]);
    });
    expect(demo.summary.quarantineReasons.TGT_AMBIGUOUS_MATCH).toBe(1);
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

describe('releasing and discarding a selection of entries', () => {
  const start = demoSuite('sluice-release-many-');

  it('sends what now passes in one run, keeps what still fails or was overtaken, and says so per entry', async () => {
    const { demo, env } = await start();
    const badNpis = await demo.store.listQuarantine({ flow: 'epic-to-veeva', status: 'open' });
    expect(badNpis.length).toBeGreaterThan(2);
    // Organisations a CRM duplicate held back (since merged away): one of them an old version of a
    // delivered one, one held back twice (a second, newer version came and was held back too).
    const clinic = (n: number) => ({
      resourceType: 'Organization',
      id: `held-clinic-${n}`,
      meta: { versionId: '1', lastUpdated: new Date().toISOString() },
      active: true,
      name: `Held Clinic ${n}`,
    });
    const held = [await holdBack(demo, 'held-1', 'TGT_AMBIGUOUS_MATCH', clinic(1))];
    held.push(await holdBack(demo, 'held-2', 'TGT_AMBIGUOUS_MATCH', clinic(2)));
    const delivered = demo.ehr.repo.recordedIds('Organization')[2] as string;
    held.push(
      await holdBack(demo, 'held-3', 'TGT_AMBIGUOUS_MATCH', {
        ...clinic(3),
        id: delivered,
        meta: { versionId: '0', lastUpdated: '2020-01-01T00:00:00Z' },
      }),
    );
    held.push(
      await holdBack(demo, 'held-4', 'TGT_AMBIGUOUS_MATCH', {
        ...clinic(1),
        meta: { versionId: '2', lastUpdated: new Date(Date.now() + 1000).toISOString() },
        name: 'Held Clinic 1, renamed',
      }),
    );

    // Neither an id nor a selection, or both: nothing happens.
    const neither = await sluice(['quarantine', 'release', FLOW, '--json'], env);
    expect(neither.code).toBe(2);
    expect(last(neither.stdout)).toMatchObject({ error: { code: 'CFG_ARGUMENTS_INVALID' } });
    const both = await sluice(['quarantine', 'release', FLOW, held[0]?.id as string, '--all', '--json'], env);
    expect(last(both.stdout)).toMatchObject({ error: { code: 'CFG_ARGUMENTS_INVALID' } });

    const run = await sluice(['quarantine', 'release', FLOW, '--code', 'TGT_AMBIGUOUS_MATCH', '--json'], env);
    expect(run.code).toBe(1);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.slice(0, 4)).toEqual([
      { id: held[0]?.id, outcome: 'superseded', processed: 'released' },
      { id: held[1]?.id, outcome: 'released' },
      { id: held[2]?.id, outcome: 'superseded', processed: 'delivered' },
      { id: held[3]?.id, outcome: 'released' },
    ]);
    expect(lines[4]).toMatchObject({
      selected: 4,
      released: 2,
      superseded: 2,
      stillFailing: 0,
      status: 'succeeded',
    });
    const names = demo.crm.records('Account').map((a) => a.Name);
    expect(names).toEqual(expect.arrayContaining(['Held Clinic 1, renamed', 'Held Clinic 2']));
    expect(names).not.toContain('Held Clinic 1');
    expect(names).not.toContain('Held Clinic 3');
    const audited = await sluice(['audit', 'query', FLOW, '--kind', 'release', '--json'], env);
    const releases = audited.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { details: Record<string, unknown> });
    expect(releases.map((e) => e.details.quarantineId).sort()).toEqual([held[1]?.id, held[3]?.id].sort());

    // Everything else: the malformed NPIs still fail, the old versions are still overtaken.
    const all = await sluice(['quarantine', 'release', FLOW, '--all', '--json'], env);
    expect(last(all.stdout)).toMatchObject({
      selected: badNpis.length + 2,
      released: 0,
      stillFailing: badNpis.length,
      superseded: 2,
    });
    expect(all.stdout).not.toContain('"runId"');

    // Listing narrows the same way, and says when it shows fewer than there are.
    const listed = await sluice(
      ['quarantine', 'list', FLOW, '--code', 'MAP_INVALID_IDENTIFIER', '--limit', '2'],
      env,
    );
    expect(listed.code).toBe(0);
    expect(listed.stdout.trim().split('\n')).toHaveLength(3);
    expect(listed.stdout).toContain(`${badNpis.length} open entries, the first 2 shown (--limit)`);
    const bogus = await sluice(['quarantine', 'list', FLOW, '--status', 'closed', '--json'], env);
    expect(bogus.code).toBe(2);
    expect(last(bogus.stdout)).toMatchObject({ error: { code: 'CFG_ARGUMENTS_INVALID' } });

    // Reading the state needs no connection settings; anything that could send does.
    const stateOnly = { ...env, SLUICE_EHR_URL: '', SLUICE_CRM_URL: '' };
    const status = await sluice(['status', FLOW, '--json'], stateOnly);
    expect(status.code, status.stderr).toBe(0);
    expect(last(status.stdout)).toMatchObject({
      openQuarantine: badNpis.length + 2,
      openQuarantineByCode: { MAP_INVALID_IDENTIFIER: badNpis.length, TGT_AMBIGUOUS_MATCH: 2 },
    });
    const offlineList = await sluice(['quarantine', 'list', FLOW, '--json'], stateOnly);
    expect(offlineList.stdout.trim().split('\n')).toHaveLength(badNpis.length + 2);
    const offlineRelease = await sluice(['quarantine', 'release', FLOW, '--all', '--json'], stateOnly);
    expect(offlineRelease.code).toBe(2);
    expect(last(offlineRelease.stdout)).toMatchObject({ error: { code: 'CFG_FLOW_INVALID' } });

    // Discarding by code takes every malformed NPI, and only those.
    const discarded = await sluice(
      ['quarantine', 'discard', FLOW, '--code', 'MAP_INVALID_IDENTIFIER', '--reason', 'test-data', '--json'],
      env,
    );
    expect(discarded.code, discarded.stderr).toBe(0);
    expect(last(discarded.stdout)).toEqual({
      selected: badNpis.length,
      discarded: badNpis.length,
      reason: 'test-data',
    });
    const open = await demo.store.listQuarantine({ flow: 'epic-to-veeva', status: 'open' });
    expect(open.map((e) => e.id)).toEqual([held[0]?.id, held[2]?.id]);
  }, 120_000);
});
