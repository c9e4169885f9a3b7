import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import type { AuditEventInput } from './entry.ts';
import { fromHex } from './hash.ts';
import { verifyConsistency, verifyInclusion } from './merkle.ts';
import { dropAuditTriggers, openTestLog } from './testing.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const HOUR = 3_600_000;
let now = T0;
const clock = () => new Date(now);

/** `count` entries, one per hour from T0 (entry i is recorded at T0 + i hours). */
function hourly(count: number, from = 0): AuditEventInput[] {
  return Array.from({ length: count }, (_, i) => ({
    at: new Date(T0 + (from + i) * HOUR),
    kind: 'send' as const,
    flow: 'epic-to-veeva',
    outcome: 'success' as const,
    batchId: `b${from + i}`,
    details: { n: from + i },
  }));
}

async function prunedLog(size: number, every: number) {
  now = T0 + 10_000 * HOUR;
  const opened = await openTestLog({ checkpointEvery: every, clock });
  for (let i = 0; i < size; i += every) await opened.log.append(hourly(Math.min(every, size - i), i));
  await opened.log.checkpoint();
  return opened;
}

const h = (hex: string) => fromHex(hex) as Uint8Array;

describe('retention', () => {
  it('prunes at the last checkpoint before the cut-off and leaves a log that verifies', async () => {
    const { log, db } = await prunedLog(100, 16);
    // Cut-off between entries 40 and 41: the checkpoints are at 16, 32, 48, ...; 32 is the cut.
    const result = await log.prune({ before: new Date(T0 + 40.5 * HOUR) });
    expect(result).toMatchObject({
      cut: 32,
      previousCut: 0,
      entriesPruned: 32,
      checkpointsPruned: 1,
      recordSeq: 100,
    });
    const count = db.prepare('SELECT count(*) AS n, min(seq) AS lo FROM audit_entries').get() as {
      n: number;
      lo: number;
    };
    expect(count).toEqual({ n: 69, lo: 32 });
    // Only the frontier of 32 (one subtree) is left of the prefix.
    const prefixNodes = db
      .prepare('SELECT level, idx FROM audit_nodes WHERE (idx + 1) * (1 << level) <= 32')
      .all();
    expect(prefixNodes.map((n) => ({ ...n }))).toEqual([{ level: 5, idx: 0 }]);
    const report = await log.verify();
    expect(report).toMatchObject({ ok: true, base: 32, size: 101, entries: 69, unsealed: 0 });
    const record = await log.query({ kind: 'retention-prune' });
    expect(record.entries[0]).toMatchObject({
      seq: 100,
      details: { cut: 32, previousCut: 0, entriesPruned: 32 },
    });
  });

  it('keeps proofs for kept entries and consistency from any size at or after the cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 5, max: 60 }),
        fc.integer({ min: 2, max: 9 }),
        fc.nat(),
        async (size, every, pick) => {
          const { log } = await prunedLog(size, every);
          const cutoff = T0 + ((pick % size) + 0.5) * HOUR;
          const { cut } = await log.prune({ before: new Date(cutoff) });
          await log.append(hourly(3, size));
          const latest = await log.checkpoint();
          if (!latest) throw new Error('no checkpoint');
          expect((await log.verify()).ok).toBe(true);
          for (let seq = cut; seq < latest.treeSize; seq++) {
            const proof = await log.inclusionProof(seq);
            expect(proof.treeSize).toBe(latest.treeSize);
            expect(
              verifyInclusion(h(proof.leafHash), seq, proof.treeSize, proof.path.map(h), h(latest.rootHash)),
            ).toBe(true);
          }
          for (let from = Math.max(cut, 1); from <= latest.treeSize; from += 3) {
            const proof = await log.consistencyProof(from, latest.treeSize);
            expect(
              verifyConsistency(
                from,
                latest.treeSize,
                h(proof.fromRoot),
                h(latest.rootHash),
                proof.path.map(h),
              ),
            ).toBe(true);
          }
          if (cut > 0) {
            const gone = await log.inclusionProof(cut - 1).catch((err: unknown) => err);
            expect(isSluiceError(gone) && gone.code).toBe('AUDIT_PROOF_UNAVAILABLE');
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('never prunes an entry recorded after the cut-off, even when timestamps are out of order', async () => {
    now = T0 + 10_000 * HOUR;
    const { log } = await openTestLog({ checkpointEvery: 10, clock });
    const entries = hourly(30);
    // Entry 7 was recorded late (a delayed report): it is newer than the cut-off.
    entries[7] = { ...entries[7], at: new Date(T0 + 500 * HOUR) } as AuditEventInput;
    await log.append(entries);
    await log.checkpoint();
    const result = await log.prune({ before: new Date(T0 + 25 * HOUR) });
    expect(result).toMatchObject({ cut: 0, entriesPruned: 0 });
    expect((await log.query({ batchId: 'b7' })).entries).toHaveLength(1);
  });

  it('prunes again from the previous cut, and does nothing when no checkpoint qualifies', async () => {
    const { log } = await prunedLog(64, 8);
    expect((await log.prune({ before: new Date(T0 + 20 * HOUR) })).cut).toBe(16);
    expect((await log.prune({ before: new Date(T0 + 20 * HOUR) })).entriesPruned).toBe(0);
    expect(await log.prune({ before: new Date(T0 + 50 * HOUR) })).toMatchObject({ cut: 48, previousCut: 16 });
    expect((await log.verify()).ok).toBe(true);
    expect((await log.prune({ before: new Date(T0 - HOUR) })).entriesPruned).toBe(0);
  });

  it('refuses to prune a log that does not verify, and deletes nothing', async () => {
    const { log, db } = await prunedLog(40, 10);
    dropAuditTriggers(db);
    db.prepare(
      'UPDATE audit_entries SET canonical = replace(canonical, \'"b3"\', \'"b9"\') WHERE seq = 3',
    ).run();
    const err = await log.prune({ before: new Date(T0 + 35 * HOUR) }).catch((e: unknown) => e);
    expect(isSluiceError(err) && err.code).toBe('AUDIT_PRUNE_REFUSED');
    expect(isSluiceError(err) && err.details).toMatchObject({ breakSeq: 3, breakKind: 'content-changed' });
    expect((db.prepare('SELECT count(*) AS n FROM audit_entries').get() as { n: number }).n).toBe(40);
  });

  it('detects a prefix deleted behind a fake retention record', async () => {
    const { log, db } = await prunedLog(40, 10);
    dropAuditTriggers(db);
    const checkpoint = db.prepare('SELECT jws FROM audit_checkpoints WHERE tree_size = 20').get() as {
      jws: string;
    };
    const chain = db.prepare('SELECT chain_hash FROM audit_entries WHERE seq = 19').get() as {
      chain_hash: Uint8Array;
    };
    db.prepare(
      'INSERT INTO audit_retention (cut, chain_head, checkpoint_jws, pruned_at, entries_pruned) VALUES (20, ?, ?, ?, 20)',
    ).run(chain.chain_hash, checkpoint.jws, clock().toISOString());
    db.prepare('DELETE FROM audit_entries WHERE seq < 20').run();
    const report = await log.verify();
    expect(report.firstBreak).toMatchObject({ kind: 'entry-missing', seq: 0 });
    expect(report.entries).toBe(20);
  });

  it('detects tampering with what is kept of the pruned prefix', async () => {
    const { log, db } = await prunedLog(40, 10);
    await log.prune({ before: new Date(T0 + 25 * HOUR) });
    dropAuditTriggers(db);
    db.prepare('UPDATE audit_retention SET chain_head = zeroblob(32)').run();
    expect((await log.verify()).firstBreak).toMatchObject({ kind: 'checkpoint-root-mismatch', seq: 20 });
  });

  it('keeps the append-only triggers honest: no delete above the cut, no update at all', async () => {
    const { log, db } = await prunedLog(40, 10);
    await log.prune({ before: new Date(T0 + 25 * HOUR) });
    expect(() => db.prepare('DELETE FROM audit_entries WHERE seq = 25').run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_retention').run()).toThrow(/append-only/);
    expect(() => db.prepare('UPDATE audit_nodes SET hash = zeroblob(32)').run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_checkpoints WHERE tree_size = 20').run()).toThrow(
      /append-only/,
    );
  });
});
