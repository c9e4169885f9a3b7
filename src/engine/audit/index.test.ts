import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { compactVerify, createLocalJWKSet } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import { fromHex } from './hash.ts';
import { AuditLog, verifyInclusion } from './index.ts';
import { dropAuditTriggers, openTestLog, syntheaAuditEvents, syntheaPatients, testKeys } from './testing.ts';

const patients = syntheaPatients(2);
const events = syntheaAuditEvents(patients, { runId: 'run-42' });
const h = (hex: string) => fromHex(hex) as Uint8Array;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-audit-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    (err: unknown) => (isSluiceError(err) ? err.code : String(err)),
  );
}

describe('AuditLog', () => {
  it('records a run, seals it at run-end, and proves entries to a reader holding only the public keys', async () => {
    const keys = await testKeys();
    const path = join(dir, 'audit.db');
    const writer = await AuditLog.open({ store: path, signer: keys.signer, checkpointEvery: 100 });
    await writer.append([{ kind: 'run-start', flow: 'epic-to-veeva', runId: 'run-42', outcome: 'success' }]);
    for (let i = 0; i < events.length; i += 64) await writer.append(events.slice(i, i + 64));
    const [end] = await writer.append([
      { kind: 'run-end', flow: 'epic-to-veeva', runId: 'run-42', outcome: 'success' },
    ]);
    await writer.close();

    const reader = await AuditLog.open({ store: path, jwks: keys.jwks });
    const latest = await reader.latestCheckpoint();
    expect(latest?.treeSize).toBe((end?.seq ?? 0) + 1);
    // The checkpoint is an ordinary JWS: any JOSE library can check it.
    const { payload } = await compactVerify(latest?.jws as string, createLocalJWKSet(keys.jwks));
    expect(JSON.parse(new TextDecoder().decode(payload))).toMatchObject({
      treeSize: latest?.treeSize,
      log: reader.logId,
    });
    for (const seq of [0, 1, 77, 200, latest!.treeSize - 1]) {
      const proof = await reader.inclusionProof(seq);
      expect(proof.checkpoint?.rootHash).toBe(latest?.rootHash);
      expect(
        verifyInclusion(h(proof.leafHash), seq, proof.treeSize, proof.path.map(h), h(latest!.rootHash)),
      ).toBe(true);
    }
    expect((await reader.verify()).ok).toBe(true);
    expect(await codeOf(reader.append([events[0]!]))).toBe('AUDIT_SIGNER_MISSING');
    await reader.close();
  });

  it('refuses a whole batch when one entry is invalid', async () => {
    const { log } = await openTestLog();
    const err = await log
      .append([events[0]!, { ...events[1]!, subject: 'Dana Feest' as never }])
      .catch((e: unknown) => e);
    expect(isSluiceError(err) && err.code).toBe('AUDIT_ENTRY_INVALID');
    expect(isSluiceError(err) && err.message).toMatch(/^Entry #1 of the batch/);
    expect(log.size).toBe(0);
    expect((await log.query({})).entries).toEqual([]);
  });

  it('keeps seq dense under concurrent appends through one instance', async () => {
    const { log } = await openTestLog({ checkpointEvery: 7 });
    const batches = Array.from({ length: 10 }, (_, i) => events.slice(i * 5, i * 5 + 5));
    const results = await Promise.all(batches.map((b) => log.append(b)));
    expect(
      results
        .flat()
        .map((e) => e.seq)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect((await log.verify()).ok).toBe(true);
  });

  it('seals on demand before proving an entry that no checkpoint covers yet', async () => {
    const { log } = await openTestLog({ checkpointEvery: 0 });
    await log.append(events.slice(0, 5));
    expect(await log.latestCheckpoint()).toBeUndefined();
    const proof = await log.inclusionProof(3);
    expect(proof.treeSize).toBe(5);
    expect(await codeOf(log.inclusionProof(5))).toBe('AUDIT_PROOF_UNAVAILABLE');
    expect(await codeOf(log.inclusionProof(-1))).toBe('AUDIT_PROOF_UNAVAILABLE');
    expect(await codeOf(log.consistencyProof(6, 5))).toBe('AUDIT_PROOF_UNAVAILABLE');
  });

  it('refuses to open a log whose stored tree no longer matches its latest checkpoint', async () => {
    const keys = await testKeys();
    const db = new DatabaseSync(':memory:');
    const log = await AuditLog.open({ store: db, signer: keys.signer, checkpointEvery: 8 });
    await log.append(events.slice(0, 16));
    dropAuditTriggers(db);
    // A damaged subtree below the root: opening (a cheap check of the root) passes, proofs through it fail.
    db.prepare('UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 3 AND idx = 1').run();
    expect(await codeOf(log.inclusionProof(2))).toBe('AUDIT_INTEGRITY');
    expect((await log.verify()).ok).toBe(true);
    // The root subtree of the latest checkpoint: opening refuses.
    db.prepare('UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 0').run();
    expect(await codeOf(AuditLog.open({ store: db, signer: keys.signer }))).toBe('AUDIT_INTEGRITY');
  });

  it('refuses to prove an entry whose stored text was altered', async () => {
    const { log, db } = await openTestLog({ checkpointEvery: 4 });
    await log.append(events.slice(0, 8));
    dropAuditTriggers(db);
    db.prepare(
      "UPDATE audit_entries SET canonical = replace(canonical, 'run-42', 'run-43') WHERE seq = 2",
    ).run();
    expect(await codeOf(log.inclusionProof(2))).toBe('AUDIT_INTEGRITY');
  });
});
