import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import type { AuditEventInput } from './entry.ts';
import { AuditLog } from './index.ts';
import { TEST_PSEUDONYM_KEY, testKeys } from './testing.ts';

const TOTAL = 100_000;
const BATCH = 500;

describe('audit log throughput', () => {
  it('appends 100k entries in batches of 500 to a file, then verifies and proves (times printed)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-perf-'));
    try {
      const keys = await testKeys();
      const log = await AuditLog.open({
        store: join(dir, 'audit.db'),
        signer: keys.signer,
        checkpointEvery: 10_000,
      });
      const subjects = Array.from({ length: 1000 }, (_, i) =>
        pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', `patient-${i}`),
      );
      const t0 = performance.now();
      for (let start = 0; start < TOTAL; start += BATCH) {
        const batch: AuditEventInput[] = Array.from({ length: BATCH }, (_, i) => ({
          kind: 'send',
          flow: 'epic-to-veeva',
          runId: 'run-perf',
          batchId: `b${Math.floor((start + i) / 200)}`,
          recipient: 'veeva',
          purpose: 'TREAT',
          subject: subjects[(start + i) % subjects.length],
          outcome: 'success',
          details: { resourceType: 'Practitioner', fields: 12 },
        }));
        await log.append(batch);
      }
      const appendMs = performance.now() - t0;
      const t1 = performance.now();
      const report = await log.verify();
      const verifyMs = performance.now() - t1;
      const t2 = performance.now();
      const proof = await log.inclusionProof(54_321);
      const page = await log.query({ subject: subjects[7], limit: 1000 });
      const readMs = performance.now() - t2;
      console.log(
        `audit perf: append ${TOTAL} in batches of ${BATCH}: ${(appendMs / 1000).toFixed(2)} s ` +
          `(${Math.round(TOTAL / (appendMs / 1000))}/s); verify: ${(verifyMs / 1000).toFixed(2)} s; ` +
          `proof + subject search: ${readMs.toFixed(1)} ms`,
      );
      expect(report).toMatchObject({ ok: true, size: TOTAL, sealedSize: TOTAL, checkpoints: 10 });
      expect(proof.path.length).toBe(17);
      expect(page.entries).toHaveLength(100);
      await log.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
