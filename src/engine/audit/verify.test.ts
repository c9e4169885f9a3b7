import type { DatabaseSync } from 'node:sqlite';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import type { AuditEventInput } from './entry.ts';
import { canonicalEntry, leafHashOf, normalizeEntry } from './entry.ts';
import { chainHash } from './hash.ts';
import type { AuditLog } from './index.ts';
import { SqliteAuditStore } from './sqlite-audit-store.ts';
import {
  dropAuditTriggers,
  openTestLog,
  syntheaAuditEvents,
  syntheaPatients,
  TEST_PSEUDONYM_KEY,
  type TestKeys,
  testKeys,
} from './testing.ts';
import { verifyAudit } from './verify.ts';

const SIZE = 40;
const EVERY = 10;
const clock = () => new Date('2025-03-01T12:00:00.000Z');
const patients = syntheaPatients(2);
const events = syntheaAuditEvents(patients).slice(0, SIZE);

/** A sealed log of 40 Synthea-derived entries with checkpoints at 10, 20, 30 and 40. */
async function fixture(keys?: TestKeys): Promise<{ log: AuditLog; db: DatabaseSync; keys: TestKeys }> {
  const opened = await openTestLog({ checkpointEvery: EVERY, clock, ...(keys ? { keys } : {}) });
  for (let i = 0; i < SIZE; i += EVERY) await opened.log.append(events.slice(i, i + EVERY));
  dropAuditTriggers(opened.db);
  return opened;
}

type Column = 'canonical' | 'leaf_hash' | 'chain_hash';

function read(db: DatabaseSync, seq: number, column: Column): Buffer {
  const row = db.prepare(`SELECT CAST(${column} AS BLOB) AS b FROM audit_entries WHERE seq = ?`).get(seq) as {
    b: Uint8Array;
  };
  return Buffer.from(row.b);
}

function flipByte(db: DatabaseSync, seq: number, column: Column, position: number, mask: number): void {
  const bytes = read(db, seq, column);
  bytes[position % bytes.length] = (bytes[position % bytes.length] as number) ^ mask;
  const value = column === 'canonical' ? 'CAST(? AS TEXT)' : '?';
  db.prepare(`UPDATE audit_entries SET ${column} = ${value} WHERE seq = ?`).run(bytes, seq);
}

/** Moves rows at or above `from` by `delta` positions (the `seq` column only). */
function shift(db: DatabaseSync, from: number, delta: number): void {
  db.prepare('UPDATE audit_entries SET seq = seq + 1000000 WHERE seq >= ?').run(from);
  db.prepare('UPDATE audit_entries SET seq = seq - 1000000 + ? WHERE seq >= 1000000').run(delta);
}

function swap(db: DatabaseSync, a: number, b: number): void {
  db.prepare('UPDATE audit_entries SET seq = -1 WHERE seq = ?').run(a);
  db.prepare('UPDATE audit_entries SET seq = ? WHERE seq = ?').run(a, b);
  db.prepare('UPDATE audit_entries SET seq = ? WHERE seq = -1').run(b);
}

/** A well-formed forged entry claiming position `seq`, chained after the stored entry seq - 1. */
function forge(db: DatabaseSync, seq: number, input: Partial<AuditEventInput> = {}) {
  const subject = pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', 'someone-else');
  const entry = normalizeEntry(
    { kind: 'reidentify', flow: 'epic-to-veeva', outcome: 'success', subject, ...input },
    seq,
    clock(),
  );
  const canonical = canonicalEntry(entry);
  const leaf = leafHashOf(canonical);
  const prev = read(db, seq - 1, 'chain_hash');
  return { canonical, leaf, chain: chainHash(prev, leaf) };
}

function insertRow(
  db: DatabaseSync,
  seq: number,
  row: { canonical: string; leaf: Uint8Array; chain: Uint8Array },
) {
  db.prepare('INSERT INTO audit_entries (seq, canonical, leaf_hash, chain_hash) VALUES (?, ?, ?, ?)').run(
    seq,
    row.canonical,
    row.leaf,
    row.chain,
  );
}

/** Rewrites entry `seq` and recomputes every later leaf and chain hash, as a careful attacker would. */
function rewriteWithHashes(db: DatabaseSync, seq: number): void {
  const rows = db
    .prepare('SELECT seq, canonical FROM audit_entries WHERE seq >= ? ORDER BY seq')
    .all(seq) as {
    seq: number;
    canonical: string;
  }[];
  let prev = read(db, seq - 1, 'chain_hash') as Uint8Array;
  for (const row of rows) {
    const canonical =
      row.seq === seq ? row.canonical.replace('"outcome":"denied"', '"outcome":"success"') : row.canonical;
    const leaf = leafHashOf(canonical);
    prev = chainHash(prev, leaf);
    db.prepare('UPDATE audit_entries SET canonical = ?, leaf_hash = ?, chain_hash = ? WHERE seq = ?').run(
      canonical,
      leaf,
      prev,
      row.seq,
    );
  }
}

async function breakOf(log: AuditLog, options = {}) {
  const report = await log.verify(options);
  return report.firstBreak ? { kind: report.firstBreak.kind, seq: report.firstBreak.seq } : undefined;
}

describe('verifyAudit on an intact log', () => {
  it('verifies every entry and checkpoint and reports nothing unsealed', async () => {
    const { log } = await fixture();
    const report = await log.verify();
    expect(report).toMatchObject({
      ok: true,
      base: 0,
      size: SIZE,
      entries: SIZE,
      checkpoints: 4,
      sealedSize: SIZE,
    });
    expect(report.unsealed).toBe(0);
    expect(report.firstBreak).toBeUndefined();
  });

  it('counts entries after the latest checkpoint as unsealed, until the run-end seals them', async () => {
    const { log } = await fixture();
    await log.append([{ kind: 'send', flow: 'epic-to-veeva', outcome: 'success' }]);
    expect(await log.verify()).toMatchObject({ ok: true, size: SIZE + 1, sealedSize: SIZE, unsealed: 1 });
    await log.append([{ kind: 'run-end', flow: 'epic-to-veeva', outcome: 'success' }]);
    expect(await log.verify()).toMatchObject({ ok: true, size: SIZE + 2, sealedSize: SIZE + 2, unsealed: 0 });
  });

  it('accepts checkpoints of retired keys while they are in the JWKS, and flags them once removed', async () => {
    const first = await testKeys('2024');
    const second = await testKeys('2025');
    const { db } = await fixture(first);
    const both = { keys: [...first.jwks.keys, ...second.jwks.keys] };
    const { AuditLog } = await import('./index.ts');
    const rotated = await AuditLog.open({
      store: db,
      signer: second.signer,
      jwks: both,
      checkpointEvery: EVERY,
      clock,
    });
    await rotated.append(events.slice(0, EVERY));
    expect(await rotated.verify()).toMatchObject({ ok: true, checkpoints: 5 });
    const store = SqliteAuditStore.open(db);
    const onlyNew = await verifyAudit(store, second.jwks);
    expect(onlyNew.firstBreak).toMatchObject({ kind: 'checkpoint-signature', seq: 0, treeSize: 10 });
  });
});

describe('verifyAudit finds tampering and says where', () => {
  it('flipping any byte of any stored canonical text is content-changed at that entry', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(SIZE - 1),
        fc.nat(2000),
        fc.integer({ min: 1, max: 255 }),
        async (seq, pos, mask) => {
          const { log, db } = await fixture();
          flipByte(db, seq, 'canonical', pos, mask);
          expect(await breakOf(log)).toEqual({ kind: 'content-changed', seq });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('flipping any byte of a stored hash is content-changed (leaf) or chain-broken (chain) at that entry', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(SIZE - 1),
        fc.nat(31),
        fc.integer({ min: 1, max: 255 }),
        fc.constantFrom<Column>('leaf_hash', 'chain_hash'),
        async (seq, pos, mask, column) => {
          const { log, db } = await fixture();
          flipByte(db, seq, column, pos, mask);
          const kind = column === 'leaf_hash' ? 'content-changed' : 'chain-broken';
          expect(await breakOf(log)).toEqual({ kind, seq });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('a deleted entry is entry-missing at its position, with or without renumbering', async () => {
    for (const seq of [0, 13, 20, SIZE - 2]) {
      const { log, db } = await fixture();
      db.prepare('DELETE FROM audit_entries WHERE seq = ?').run(seq);
      expect(await breakOf(log)).toEqual({ kind: 'entry-missing', seq });
      shift(db, seq + 1, -1);
      expect(await breakOf(log)).toEqual({ kind: 'entry-missing', seq });
    }
  });

  it('a deleted last entry is caught by the checkpoint that covered it', async () => {
    const { log, db } = await fixture();
    db.prepare('DELETE FROM audit_entries WHERE seq = ?').run(SIZE - 1);
    expect(await breakOf(log)).toEqual({ kind: 'entry-missing', seq: SIZE - 1 });
  });

  it('two swapped entries are reordered at the first of them', async () => {
    for (const [a, b] of [
      [3, 4],
      [5, 27],
      [0, SIZE - 1],
    ] as const) {
      const { log, db } = await fixture();
      swap(db, a, b);
      expect(await breakOf(log)).toEqual({ kind: 'reordered', seq: a });
    }
  });

  it('a forged entry slipped in with correct hashes is entry-inserted at its position', async () => {
    for (const seq of [5, 9, 10, 33]) {
      const { log, db } = await fixture();
      const row = forge(db, seq);
      shift(db, seq, 1);
      insertRow(db, seq, row);
      expect(await breakOf(log)).toEqual({ kind: 'entry-inserted', seq });
    }
  });

  it('a forged entry with a broken chain or a bogus leaf hash is still entry-inserted, not a mere change', async () => {
    for (const spoil of ['chain', 'leaf'] as const) {
      const { log, db } = await fixture();
      const row = forge(db, 17);
      shift(db, 17, 1);
      insertRow(db, 17, { ...row, [spoil]: new Uint8Array(32) });
      expect(await breakOf(log)).toEqual({ kind: 'entry-inserted', seq: 17 });
    }
  });

  it('a duplicated entry is entry-inserted where the copy sits', async () => {
    const { log, db } = await fixture();
    const copy = db
      .prepare('SELECT canonical, leaf_hash, chain_hash FROM audit_entries WHERE seq = 6')
      .get() as {
      canonical: string;
      leaf_hash: Uint8Array;
      chain_hash: Uint8Array;
    };
    shift(db, 8, 1);
    insertRow(db, 8, { canonical: copy.canonical, leaf: copy.leaf_hash, chain: copy.chain_hash });
    expect(await breakOf(log)).toEqual({ kind: 'entry-inserted', seq: 8 });
  });

  it('a rewrite that recomputes every hash is caught by the next checkpoint, located to its interval', async () => {
    const { log, db } = await fixture();
    const target = events.findIndex((e, i) => i > 20 && i < 30 && e.outcome === 'denied');
    expect(target).toBeGreaterThan(20);
    rewriteWithHashes(db, target);
    const report = await log.verify();
    expect(report.firstBreak).toMatchObject({ kind: 'checkpoint-root-mismatch', seq: 20, treeSize: 30 });
    expect(report.entries).toBe(30);
    expect(report.checkpoints).toBe(2);
  });

  it('a forged entry appended after the last checkpoint is not provable; it shows as unsealed', async () => {
    const { log, db } = await fixture();
    insertRow(db, SIZE, forge(db, SIZE));
    expect(await log.verify()).toMatchObject({ ok: true, sealedSize: SIZE, unsealed: 1 });
  });

  it('a stored checkpoint with a damaged signature, a foreign key, another log or another size is checkpoint-signature', async () => {
    const other = await testKeys('audit-test-1');
    const tamperings: ((db: DatabaseSync, jws: string) => Promise<string>)[] = [
      async (_db, jws) => `${jws.slice(0, -4)}${jws.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`,
      async () =>
        (
          await other.signer.sign({
            log: 'x',
            treeSize: 20,
            rootHash: '0'.repeat(64),
            chainHead: '0'.repeat(64),
            at: clock().toISOString(),
          })
        ).jws,
    ];
    for (const tamper of tamperings) {
      const { log, db } = await fixture();
      const { jws } = db.prepare('SELECT jws FROM audit_checkpoints WHERE tree_size = 20').get() as {
        jws: string;
      };
      db.prepare('UPDATE audit_checkpoints SET jws = ? WHERE tree_size = 20').run(await tamper(db, jws));
      expect((await log.verify()).firstBreak).toMatchObject({
        kind: 'checkpoint-signature',
        seq: 10,
        treeSize: 20,
      });
    }
    // Valid signatures, but for another log id or stored under another size.
    const { log, db, keys } = await fixture();
    const foreign = await keys.signer.sign({
      log: 'another-log',
      treeSize: 20,
      rootHash: '0'.repeat(64),
      chainHead: '0'.repeat(64),
      at: clock().toISOString(),
    });
    db.prepare('UPDATE audit_checkpoints SET jws = ? WHERE tree_size = 20').run(foreign.jws);
    expect((await log.verify()).firstBreak).toMatchObject({ kind: 'checkpoint-signature', seq: 10 });
    const thirty = db.prepare('SELECT jws FROM audit_checkpoints WHERE tree_size = 30').get() as {
      jws: string;
    };
    db.prepare('UPDATE audit_checkpoints SET jws = ? WHERE tree_size = 20').run(thirty.jws);
    expect((await log.verify()).firstBreak).toMatchObject({
      kind: 'checkpoint-signature',
      seq: 10,
      treeSize: 20,
    });
  });

  it('truncation with its checkpoints deleted passes alone, but not against an anchor kept outside', async () => {
    const { log, db } = await fixture();
    const anchor = (await log.latestCheckpoint())?.jws as string;
    db.prepare('DELETE FROM audit_entries WHERE seq >= 25').run();
    db.prepare('DELETE FROM audit_checkpoints WHERE tree_size > 25').run();
    expect((await log.verify()).ok).toBe(true);
    expect((await log.verify({ anchors: [anchor] })).firstBreak).toEqual({
      seq: 25,
      kind: 'entry-missing',
      message: 'A checkpoint covers 40 entries but the log ends at 25: entries from 25 are missing.',
    });
  });

  it('an anchor from another signer is reported, not ignored', async () => {
    const { log } = await fixture();
    const stranger = await testKeys('stranger');
    const foreign = await stranger.signer.sign({
      log: log.logId,
      treeSize: 10,
      rootHash: '0'.repeat(64),
      chainHead: '0'.repeat(64),
      at: clock().toISOString(),
    });
    expect((await log.verify({ anchors: [foreign.jws] })).firstBreak).toMatchObject({
      kind: 'checkpoint-signature',
    });
  });

  it('does not put entry content in its messages', async () => {
    const { log, db } = await fixture();
    flipByte(db, 3, 'canonical', 40, 4);
    const report = await log.verify();
    const subject = pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', patients[0]?.patientId as string);
    expect(JSON.stringify(report)).not.toContain(subject);
    for (const value of patients[0]?.phi ?? []) expect(JSON.stringify(report)).not.toContain(value);
  });
});
