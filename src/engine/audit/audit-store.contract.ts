import { describe, expect, it } from 'vitest';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import { isSluiceError } from '../../core/errors/index.ts';
import { buildBatch, loadHead } from './append.ts';
import type { AuditEventInput } from './entry.ts';
import { fromHex, toHex } from './hash.ts';
import { AuditLog } from './index.ts';
import { subtreeKey, verifyInclusion } from './merkle.ts';
import type { AuditStore } from './store.ts';
import { syntheaAuditEvents, syntheaPatients, TEST_PSEUDONYM_KEY, testKeys } from './testing.ts';

/**
 * What every AuditStore engine must do alike, as vitest cases: `auditStoreContract('SQLite', open)`
 * declares them for an engine. The cases drive the store directly and through an AuditLog, and tamper
 * with it through the engine's own raw access, as someone with write access to the database would.
 */

/** Raw writes to one trail, past the store (each engine in its own SQL). */
export interface AuditTamper {
  /** Lifts the append-only guards (triggers). */
  unguard(): Promise<void>;
  canonical(seq: number): Promise<string>;
  setCanonical(seq: number, canonical: string): Promise<void>;
  deleteEntry(seq: number): Promise<void>;
  countEntries(): Promise<number>;
  setCheckpointJws(treeSize: number, jws: string): Promise<void>;
  deleteCheckpoints(): Promise<void>;
  setNodeHash(level: number, index: number, hash: Uint8Array): Promise<void>;
  deleteNodes(): Promise<void>;
  deleteRetention(): Promise<void>;
}

export interface ContractTrail {
  /** A store on a new, empty trail. */
  readonly store: AuditStore;
  /** Another store on the same trail (as a second process opens it); closed by the engine's test file. */
  reopen(options?: { logId?: string }): Promise<AuditStore>;
  readonly tamper: AuditTamper;
}

/** Opens a new trail for one case; the engine's test file closes and removes what it opened. */
export type OpenTrail = (options?: { logId?: string }) => Promise<ContractTrail>;

const NOW = new Date('2025-03-01T12:00:00.000Z');
const clock = () => NOW;
const patients = syntheaPatients(2);
const events = syntheaAuditEvents(patients, { runId: 'run-42' });
const subjects = patients.map((p) => pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', p.patientId));

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    (err: unknown) => (isSluiceError(err) ? err.code : String(err)),
  );
}

/** Changes one character of `text` at or after `position` to another printable one (valid UTF-8 kept). */
function flipped(text: string, position: number): string {
  for (let i = 0; i < text.length; i++) {
    const at = (position + i) % text.length;
    const code = text.charCodeAt(at);
    if (code >= 0x20 && code < 0x7e) {
      return text.slice(0, at) + String.fromCharCode(code ^ 1) + text.slice(at + 1);
    }
  }
  throw new Error('nothing to flip');
}

export function auditStoreContract(engine: string, open: OpenTrail): void {
  /** A sealed log of 40 entries with checkpoints at 10, 20, 30 and 40. */
  async function sealed() {
    const trail = await open();
    const keys = await testKeys();
    const log = await AuditLog.open({
      store: trail.store,
      signer: keys.signer,
      jwks: keys.jwks,
      checkpointEvery: 10,
      clock,
    });
    for (let i = 0; i < 40; i += 10) await log.append(events.slice(i, i + 10));
    return { ...trail, log, keys };
  }

  const breakOf = async (log: AuditLog) => {
    const found = (await log.verify()).firstBreak;
    return found ? { kind: found.kind, seq: found.seq } : undefined;
  };

  describe(`AuditStore contract: ${engine}`, () => {
    describe('the store', () => {
      it('fixes the log id when the trail is created and keeps entries across reopening', async () => {
        const trail = await open({ logId: 'site-a' });
        expect(await trail.store.size()).toBe(0);
        await trail.store.append(buildBatch(await loadHead(trail.store), events.slice(0, 3), NOW).batch);
        const again = await trail.reopen({ logId: 'ignored-now' });
        expect(await again.logId()).toBe('site-a');
        expect(await again.size()).toBe(3);
      });

      it('gives back entries, hashes and checkpoints exactly as appended', async () => {
        const { store } = await open();
        expect(await store.retentionBase()).toBeUndefined();
        expect(await store.latestCheckpoint()).toBeUndefined();
        const inputs: AuditEventInput[] = [
          ...events.slice(0, 6),
          // Not ASCII: the canonical text comes back byte for byte, or verification would fail.
          { kind: 'send', flow: 'epic-to-veeva', outcome: 'success', details: { site: 'Zürich – Øst ✓ 𝄞' } },
        ];
        const built = buildBatch(await loadHead(store), inputs, NOW);
        await store.append(built.batch);
        await store.putCheckpoint({ treeSize: 7, jws: 'a.b.c' });
        await store.putCheckpoint({ treeSize: 4, jws: 'd.e.f' });

        const rows = await store.entries(0, 100);
        expect(rows.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5, 6]);
        rows.forEach((row, i) => {
          const want = built.batch.entries[i];
          expect(row.canonical).toBe(want?.canonical);
          expect(row.leafHash).toBeInstanceOf(Uint8Array);
          expect(toHex(row.leafHash)).toBe(toHex(want?.leafHash ?? new Uint8Array()));
          expect(toHex(row.chainHash)).toBe(toHex(want?.chainHash ?? new Uint8Array()));
        });
        expect((await store.entries(5, 1)).map((r) => r.seq)).toEqual([5]);
        expect((await store.entry(6))?.canonical).toBe(built.batch.entries[6]?.canonical);
        expect(await store.entry(7)).toBeUndefined();

        const keys = [{ level: 0, index: 2 }, ...built.batch.nodes, { level: 3, index: 0 }];
        const hashes = await store.subtrees(keys);
        expect(toHex(hashes.get('0:2') as Uint8Array)).toBe(
          toHex(built.batch.entries[2]?.leafHash as Uint8Array),
        );
        for (const node of built.batch.nodes)
          expect(toHex(hashes.get(subtreeKey(node)) as Uint8Array)).toBe(toHex(node.hash));
        expect(hashes.has('3:0')).toBe(false);
        expect(hashes.size).toBe(keys.length - 1);

        expect(await store.checkpoints()).toEqual([
          { treeSize: 4, jws: 'd.e.f' },
          { treeSize: 7, jws: 'a.b.c' },
        ]);
        expect(await store.latestCheckpoint()).toEqual({ treeSize: 7, jws: 'a.b.c' });
        expect(await store.checkpointCovering(5)).toEqual({ treeSize: 7, jws: 'a.b.c' });
        expect(await store.checkpointCovering(4)).toEqual({ treeSize: 4, jws: 'd.e.f' });
        expect(await store.checkpointCovering(8)).toBeUndefined();
        const at = (i: number) => (events[i]?.at as Date | undefined)?.toISOString() ?? '';
        expect(await store.firstSeqAtOrAfter(at(3), 0)).toBe(3);
        expect(await store.firstSeqAtOrAfter(at(3), 5)).toBe(5);
        expect(await store.firstSeqAtOrAfter('2999-01-01T00:00:00.000Z', 0)).toBeUndefined();
      });

      it('writes a batch all or nothing', async () => {
        const { store } = await open();
        const first = buildBatch(await loadHead(store), events.slice(0, 4), NOW);
        await store.append(first.batch);
        // A batch whose last node collides with a stored one fails after its entries were inserted.
        const second = buildBatch(first.next, events.slice(4, 8), NOW);
        const broken = { ...second.batch, nodes: [...second.batch.nodes, first.batch.nodes[0]!] };
        expect(await codeOf(store.append(broken))).toBe('AUDIT_INTEGRITY');
        expect(await store.size()).toBe(4);
        expect(await store.entry(4)).toBeUndefined();
        await store.append(second.batch);
        expect(await store.size()).toBe(8);
      });

      it('refuses a batch built on a stale size, writing nothing of it', async () => {
        const trail = await open();
        const head = await loadHead(trail.store);
        await trail.store.append(buildBatch(head, events.slice(0, 2), NOW).batch);
        const other = await trail.reopen();
        const err = await other
          .append(buildBatch(head, events.slice(2, 4), NOW).batch)
          .catch((e: unknown) => e);
        expect(isSluiceError(err) && err.code).toBe('AUDIT_CONCURRENT_APPEND');
        expect(isSluiceError(err) && err.details).toEqual({ size: 2, expectedSize: 0 });
        expect(await trail.store.size()).toBe(2);
      });

      it('makes the tables append-only for every writer', async () => {
        const { store, tamper } = await open();
        await store.append(buildBatch(await loadHead(store), events.slice(0, 3), NOW).batch);
        await store.putCheckpoint({ treeSize: 3, jws: 'x.y.z' });
        const attempts: [string, () => Promise<void>][] = [
          ['update an entry', () => tamper.setCanonical(1, '{}')],
          ['delete an entry', () => tamper.deleteEntry(2)],
          ['update a checkpoint', () => tamper.setCheckpointJws(3, 'forged')],
          ['delete checkpoints', () => tamper.deleteCheckpoints()],
          ['update a node', () => tamper.setNodeHash(1, 0, new Uint8Array(32))],
          ['delete nodes', () => tamper.deleteNodes()],
        ];
        for (const [what, attempt] of attempts) await expect(attempt(), what).rejects.toThrow(/append-only/);
        expect(await store.size()).toBe(3);
        expect(await store.latestCheckpoint()).toEqual({ treeSize: 3, jws: 'x.y.z' });
      });
    });

    describe('an audit log on the store', () => {
      it('seals a run at run-end and proves entries to a reader on another store holding only the public keys', async () => {
        const trail = await open();
        const keys = await testKeys();
        const writer = await AuditLog.open({ store: trail.store, signer: keys.signer, checkpointEvery: 100 });
        await writer.append([
          { kind: 'run-start', flow: 'epic-to-veeva', runId: 'run-42', outcome: 'success' },
        ]);
        for (let i = 0; i < 150; i += 64) await writer.append(events.slice(i, Math.min(i + 64, 150)));
        const [end] = await writer.append([
          { kind: 'run-end', flow: 'epic-to-veeva', runId: 'run-42', outcome: 'success' },
        ]);
        const reader = await AuditLog.open({ store: await trail.reopen(), jwks: keys.jwks });
        expect(reader.logId).toBe(writer.logId);
        const latest = await reader.latestCheckpoint();
        expect(latest?.treeSize).toBe((end?.seq ?? 0) + 1);
        const h = (hex: string) => fromHex(hex) as Uint8Array;
        for (const seq of [0, 1, 77, 100, 151]) {
          const proof = await reader.inclusionProof(seq);
          expect(
            verifyInclusion(h(proof.leafHash), seq, proof.treeSize, proof.path.map(h), h(latest!.rootHash)),
          ).toBe(true);
        }
        const consistency = await reader.consistencyProof(50);
        expect(consistency.toRoot).toBe(latest?.rootHash);
        expect(await reader.verify()).toMatchObject({ ok: true, size: 152, sealedSize: 152 });
      });

      it('two writers on one trail: the stale one detects the other, rebuilds on the new head and stays verifiable', async () => {
        const trail = await open();
        const keys = await testKeys();
        const options = { signer: keys.signer, jwks: keys.jwks, checkpointEvery: 0, clock };
        const a = await AuditLog.open({ ...options, store: trail.store });
        const b = await AuditLog.open({ ...options, store: await trail.reopen() });
        await a.append(events.slice(0, 5));
        const written = await b.append(events.slice(5, 8));
        expect(written.map((e) => e.seq)).toEqual([5, 6, 7]);
        await a.append(events.slice(8, 10));
        await b.checkpoint();
        expect(await a.verify()).toMatchObject({ ok: true, size: 10, sealedSize: 10 });
      });

      it('searches by subject, batch, kinds, outcome, flow, recipient, run, source and time, paging both ways', async () => {
        const { store } = await open();
        const keys = await testKeys();
        const log = await AuditLog.open({ store, signer: keys.signer, checkpointEvery: 0 });
        const sample = events.slice(0, 120);
        const provider = [3, 4, 3].map((n) => ({
          kind: 'send' as const,
          flow: 'epic-to-veeva',
          recipient: 'veeva',
          outcome: 'success' as const,
          details: { stream: 'Practitioner', source: `Practitioner/9a2e4c1b-${n}` },
        }));
        await log.append(sample.slice(0, 60));
        await log.append([...sample.slice(60), ...provider]);
        const all: AuditEventInput[] = [...sample, ...provider];
        const seqs = async (query: Parameters<AuditLog['query']>[0]) => {
          const out: number[] = [];
          for (let after: number | undefined; ; ) {
            const page = await log.query({ ...query, limit: 25, ...(after === undefined ? {} : { after }) });
            out.push(...page.entries.map((e) => e.seq));
            if (page.next === undefined) return out;
            after = page.next;
          }
        };
        const where = (predicate: (e: AuditEventInput) => boolean) =>
          all.flatMap((e, i) => (predicate(e) ? [i] : []));
        expect(await seqs({ subject: subjects[1] })).toEqual(where((e) => e.subject === subjects[1]));
        expect(await seqs({ batchId: 'batch-0-1' })).toEqual(where((e) => e.batchId === 'batch-0-1'));
        expect(await seqs({ kind: ['withhold', 'quarantine'] })).toEqual(
          where((e) => e.kind === 'withhold' || e.kind === 'quarantine'),
        );
        expect(await seqs({ outcome: 'denied', subject: subjects[0] })).toEqual(
          where((e) => e.outcome === 'denied' && e.subject === subjects[0]),
        );
        expect(await seqs({ flow: 'epic-to-veeva', recipient: 'veeva', runId: 'run-42' })).toEqual(
          where((e) => e.runId === 'run-42'),
        );
        expect(await seqs({ source: 'Practitioner/9a2e4c1b-3' })).toEqual([120, 122]);
        expect(await seqs({ recipient: 'nobody' })).toEqual([]);
        const at = (i: number) => (all[i]?.at as Date | undefined)?.toISOString() ?? '';
        expect(await seqs({ from: at(10), to: at(20) })).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
        const newest = await log.query({ order: 'desc', limit: 3 });
        expect(newest.entries.map((e) => e.seq)).toEqual([122, 121, 120]);
        const older = await log.query({ order: 'desc', limit: 3, after: newest.next as number });
        expect(older.entries.map((e) => e.seq)).toEqual([119, 118, 117]);
        const [stored] = await log.append([{ ...events[0]!, subject: subjects[1] }]);
        expect((await log.query({ subject: subjects[1], order: 'desc', limit: 1 })).entries).toEqual([
          stored,
        ]);
      });

      it('refuses to hand out an entry whose stored text no longer matches its hash', async () => {
        const { log, tamper } = await sealed();
        await tamper.unguard();
        const text = await tamper.canonical(2);
        await tamper.setCanonical(2, text.replace('"run-42"', '"run-43"'));
        expect(await codeOf(log.query({ limit: 10 }))).toBe('AUDIT_INTEGRITY');
        expect(await codeOf(log.inclusionProof(2))).toBe('AUDIT_INTEGRITY');
      });
    });

    describe('verification finds tampering and says where', () => {
      it('an intact sealed log verifies, with every checkpoint', async () => {
        const { log } = await sealed();
        expect(await log.verify()).toMatchObject({
          ok: true,
          base: 0,
          size: 40,
          entries: 40,
          checkpoints: 4,
        });
      });

      it('a flipped character of the stored canonical text is content-changed at that entry', async () => {
        for (const [seq, position] of [
          [0, 5],
          [13, 200],
          [39, 77],
        ] as const) {
          const { log, tamper } = await sealed();
          await tamper.unguard();
          await tamper.setCanonical(seq, flipped(await tamper.canonical(seq), position));
          expect(await breakOf(log)).toEqual({ kind: 'content-changed', seq });
        }
      });

      it('a deleted entry is entry-missing at its position', async () => {
        for (const seq of [0, 13, 39]) {
          const { log, tamper } = await sealed();
          await tamper.unguard();
          await tamper.deleteEntry(seq);
          expect(await breakOf(log)).toEqual({ kind: 'entry-missing', seq });
        }
      });

      it('a replaced checkpoint is checkpoint-signature at the interval it seals', async () => {
        const { log, tamper, keys } = await sealed();
        await tamper.unguard();
        const foreign = await keys.signer.sign({
          log: 'another-log',
          treeSize: 20,
          rootHash: '0'.repeat(64),
          chainHead: '0'.repeat(64),
          at: NOW.toISOString(),
        });
        await tamper.setCheckpointJws(20, foreign.jws);
        expect((await log.verify()).firstBreak).toMatchObject({
          kind: 'checkpoint-signature',
          seq: 10,
          treeSize: 20,
        });
      });

      it('refuses to open a log whose stored tree no longer matches its latest checkpoint', async () => {
        const { store, tamper, keys } = await sealed();
        await tamper.unguard();
        // The subtree of entries 0-31: part of the root of the latest checkpoint (40), checked on opening.
        await tamper.setNodeHash(5, 0, new Uint8Array(32));
        expect(await codeOf(AuditLog.open({ store, signer: keys.signer }))).toBe('AUDIT_INTEGRITY');
      });
    });

    describe('retention', () => {
      const T0 = Date.parse('2025-01-01T00:00:00.000Z');
      const HOUR = 3_600_000;
      const hourly = (count: number, from = 0): AuditEventInput[] =>
        Array.from({ length: count }, (_, i) => ({
          at: new Date(T0 + (from + i) * HOUR),
          kind: 'send' as const,
          flow: 'epic-to-veeva',
          outcome: 'success' as const,
          batchId: `b${from + i}`,
        }));
      async function pruned(size: number, every: number) {
        const trail = await open();
        const keys = await testKeys();
        const log = await AuditLog.open({
          store: trail.store,
          signer: keys.signer,
          checkpointEvery: every,
          clock: () => new Date(T0 + 10_000 * HOUR),
        });
        for (let i = 0; i < size; i += every) await log.append(hourly(Math.min(every, size - i), i));
        await log.checkpoint();
        return { ...trail, log };
      }

      it('prunes at the last checkpoint before the cut-off, again from the previous cut, and stays verifiable', async () => {
        const { log, store, tamper } = await pruned(100, 16);
        expect(await log.prune({ before: new Date(T0 + 40.5 * HOUR) })).toMatchObject({
          cut: 32,
          previousCut: 0,
          entriesPruned: 32,
          checkpointsPruned: 1,
          recordSeq: 100,
        });
        expect(await tamper.countEntries()).toBe(69);
        expect(await store.retentionBase()).toMatchObject({ cut: 32 });
        expect(await log.verify()).toMatchObject({ ok: true, base: 32, size: 101, entries: 69, unsealed: 0 });
        expect(await codeOf(log.inclusionProof(31))).toBe('AUDIT_PROOF_UNAVAILABLE');
        expect((await log.inclusionProof(32)).treeSize).toBe(101);
        // Checkpoints are at 16, 32, 48, ..., 96, 100 and 101: the cut is the last one before entry 50.
        expect(await log.prune({ before: new Date(T0 + 50 * HOUR) })).toMatchObject({
          cut: 48,
          previousCut: 32,
        });
        expect((await log.prune({ before: new Date(T0 + 50 * HOUR) })).entriesPruned).toBe(0);
        expect(await log.verify()).toMatchObject({ ok: true, base: 48 });
        await log.append(hourly(3, 200));
        await log.checkpoint();
        expect((await log.verify()).ok).toBe(true);
      });

      it('keeps the append-only guards after a prune: no delete at or above the cut, none of the record', async () => {
        const { log, tamper } = await pruned(40, 10);
        await log.prune({ before: new Date(T0 + 25 * HOUR) });
        await expect(tamper.deleteEntry(25)).rejects.toThrow(/append-only/);
        await expect(tamper.deleteRetention()).rejects.toThrow(/append-only/);
        await expect(tamper.setNodeHash(4, 0, new Uint8Array(32))).rejects.toThrow(/append-only/);
        await expect(tamper.deleteCheckpoints()).rejects.toThrow(/append-only/);
        expect((await log.verify()).ok).toBe(true);
      });

      it('refuses to prune a log that does not verify, and deletes nothing', async () => {
        const { log, tamper } = await pruned(40, 10);
        await tamper.unguard();
        await tamper.setCanonical(3, (await tamper.canonical(3)).replace('"b3"', '"b9"'));
        const err = await log.prune({ before: new Date(T0 + 35 * HOUR) }).catch((e: unknown) => e);
        expect(isSluiceError(err) && err.code).toBe('AUDIT_PRUNE_REFUSED');
        expect(isSluiceError(err) && err.details).toMatchObject({
          breakSeq: 3,
          breakKind: 'content-changed',
        });
        expect(await tamper.countEntries()).toBe(40);
      });
    });
  });
}
