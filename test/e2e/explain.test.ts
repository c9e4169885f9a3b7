import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type DemoRun, runDemo } from '../../src/demo/run-demo.ts';
import { REPO_ROOT } from '../../src/testkit/data.ts';
import { lastJson, runSluice } from '../../src/testkit/sluice-process.ts';

const FLOW = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');

/** `sluice explain FLOW REF --json`, parsed. */
async function explain(ref: string, env: Record<string, string>): Promise<Record<string, unknown>> {
  const result = await runSluice(['explain', FLOW, ref, '--json'], env);
  if (result.code !== 0) throw new Error(`explain exited ${result.code}: ${result.stderr}`);
  return lastJson(result.stdout);
}

interface Lineage {
  record: string;
  target: { object: string; externalId: string }[];
  batches: string[];
  audit: { kind: string; details: Record<string, unknown> }[];
  provenance: unknown[];
}

describe('sluice explain', () => {
  let demo: DemoRun | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-explain-'));
  const key = randomBytes(32).toString('base64');
  afterAll(async () => {
    await demo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives a record its CRM records, batches, provenance and audit entries, however far back', async () => {
    process.env.SLUICE_PSEUDONYM_KEY = key;
    try {
      demo = await runDemo({ stateDir: dir });
    } finally {
      delete process.env.SLUICE_PSEUDONYM_KEY;
    }
    // Later runs pile entries on the trail: the record's own are far back.
    await demo.audit.append(
      Array.from({ length: 2_500 }, () => ({
        kind: 'run-start' as const,
        flow: 'epic-to-veeva',
        runId: 'later',
        outcome: 'success' as const,
      })),
    );
    const env = { SLUICE_PSEUDONYM_KEY: key, SLUICE_STATE_DIR: dir, SLUICE_EHR_URL: '', SLUICE_CRM_URL: '' };

    const orgId = demo.ehr.repo.recordedIds('Organization')[0] as string;
    const org = (await explain(`Organization/${orgId}`, env)) as unknown as Lineage;
    expect(org.record).toBe(`Organization/${orgId}`);
    expect(org.target.map((t) => t.object).sort()).toEqual(['Account', 'Address_vod__c']);
    expect(org.batches.length).toBeGreaterThan(0);
    expect(org.provenance.length).toBeGreaterThan(0);
    expect(org.audit.some((e) => e.kind === 'send' && e.details.source === `Organization/${orgId}`)).toBe(
      true,
    );

    // A patient is explained under its pseudonym: sent or withheld, every decision is there.
    const patients = demo.ehr.repo.recordedIds('Patient');
    let sent = 0;
    for (const id of patients) {
      const lineage = (await explain(`Patient/${id}`, env)) as unknown as Lineage;
      expect(lineage.record).toMatch(new RegExp(`^Patient/${id} \\(pseudonym p[a-z2-7]{32}\\)$`));
      expect(lineage.audit.length, id).toBeGreaterThan(0);
      expect(JSON.stringify(lineage.audit)).not.toContain(id);
      if (lineage.target.length > 0) sent++;
    }
    expect(sent).toBe(demo.crmRecordsByObject.Patient_Profile__c);
  }, 120_000);
});
