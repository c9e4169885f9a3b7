/**
 * The behaviour every state store engine shares, as vitest cases: `stateStoreContract(engine, open)`
 * declares them against stores `open` makes (each call a fresh, empty store). The engines' own test
 * files call it and add what only they do (files and WAL of SQLite, migration locks of PostgreSQL).
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildProvenance, type ProvenanceFacts } from '../../core/fhir/provenance.ts';
import { syntheaPatients } from '../../core/matrix/testing.ts';
import { validateFast } from '../../core/validate/compiled/validate.ts';
import { type PayloadKey, payloadKey } from './payload-cipher.ts';
import type {
  BatchManifest,
  NewQuarantineEntry,
  PageCommit,
  StateStore,
  StoredConsent,
} from './state-store.ts';

export interface ContractOpenOptions {
  readonly now?: () => Date;
  readonly payloadKey?: PayloadKey;
}

/** What the contract reads and writes beneath the interface, as each engine can. */
export interface ContractAccess {
  /** Another store on the same data (this one open or closed), e.g. without the payload key. */
  reopen(options?: ContractOpenOptions): Promise<ContractStore>;
  /** The `payload` column of every quarantine and change-log row, as stored. */
  storedPayloads(): Promise<string[]>;
  /** The stored facts (JSON text) of an entity's provenance rows. */
  storedFacts(entity: string): Promise<string[]>;
  /** A row of table `provenance` (a whole resource), as stores wrote them before facts. */
  insertProvenanceResource(row: {
    readonly flow: string;
    readonly entity: string;
    readonly runId: string;
    readonly recordedAt: string;
    readonly resource: string;
  }): Promise<void>;
  /**
   * Every byte the engine keeps at rest (database file and WAL), read after the store is closed;
   * absent where the engine cannot tell (a server's files).
   */
  bytesAtRest?(): Promise<string>;
}

export type ContractStore = StateStore & ContractAccess;

/** A page of a flow's Consent stream that carries consents and nothing else. */
export const consentPage = (flow: string, consents: StoredConsent[]): PageCommit => ({
  flow,
  stream: 'Consent',
  ledger: [],
  quarantine: [],
  consents,
});

const ledgerEntry = (externalId: string, hash = 'h1') => ({
  flow: 'f',
  object: 'Account',
  externalId,
  payloadHash: hash,
  targetId: `id-${externalId}`,
  sourceRef: `Organization/${externalId}`,
  mappingVersion: 'm1',
  runId: 'r1',
  deliveredAt: '2026-11-23T00:00:00.000Z',
});

/** A quarantine entry of flow `f`: a Patient that failed validation, with its record as `payload`. */
const invalidPatient = (payload: string): NewQuarantineEntry => ({
  flow: 'f',
  runId: 'r1',
  stream: 'Patient',
  stage: 'validate' as const,
  code: 'REC_INVALID_FHIR',
  issues: [],
  origin: 'page 1 record 1',
  payload,
});

const batch = (batchId: string, createdAt: string, extra: Partial<BatchManifest> = {}): BatchManifest => ({
  batchId,
  flow: 'f',
  runId: 'r1',
  object: 'Account',
  createdAt,
  purpose: 'TREAT',
  policyVersion: 'p1',
  recordCount: 2,
  envelope: `{"batch":"${batchId}"}`,
  results: { created: 2 },
  ...extra,
});

/** Change-log entries at 01:00Z, 06:00Z and 23:00Z the day before, their times written three ways. */
export const ZONED_CHANGE_LOG = [
  ['Patient/west', '2026-10-31T20:00:00-05:00'],
  ['Patient/utc', '2026-11-01T06:00:00Z'],
  ['Patient/east', '2026-11-01T09:00:00+10:00'],
].map(([ref, lastUpdated]) => ({
  ref: ref as string,
  versionKey: `v:1|${lastUpdated}`,
  lastUpdated: lastUpdated as string,
  payload: '{}',
}));

export function stateStoreContract(
  engine: string,
  open: (options?: ContractOpenOptions) => Promise<ContractStore>,
): void {
  describe(`state store contract (${engine})`, () => {
    it('keeps change-log times as UTC, so a replay window holds whatever zone the source wrote', async () => {
      const changeLog = ZONED_CHANGE_LOG;
      const store = await open();
      const refsFrom = async (from: string) =>
        (await store.readChangeLog('f', 'Patient', from, 0, 10)).map((e) => e.ref).sort();
      await store.commitPage({ flow: 'f', stream: 'Patient', ledger: [], quarantine: [], changeLog });
      // As text, `2026-10-31T20…` sorts before the bound and `2026-11-01T09…` after it.
      expect(await refsFrom('2026-11-01T00:00:00Z')).toEqual(['Patient/utc', 'Patient/west']);
      expect(await refsFrom('2026-11-01T05:00:00+05:00')).toEqual(['Patient/utc', 'Patient/west']);
      expect((await store.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.lastUpdated)).toEqual(
        ['2026-11-01T01:00:00.000Z', '2026-11-01T06:00:00.000Z', '2026-10-31T23:00:00.000Z'],
      );
      await store.close();
    });

    it('reads the change log a page at a time in recorded order, keeping the first copy of a version', async () => {
      const store = await open();
      const change = (ref: string, versionKey: string, payload: string) => ({ ref, versionKey, payload });
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [],
        changeLog: [
          change('Patient/b', 'v1', 'b1'),
          change('Patient/a', 'v1', 'a1'),
          change('Patient/b', 'v1', 'b1!'),
        ],
      });
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [],
        changeLog: [
          change('Patient/a', 'v1', 'a1!'),
          change('Patient/a', 'v2', 'a2'),
          change('Patient/c', 'v1', 'c1'),
        ],
      });
      await store.commitPage({
        flow: 'f',
        stream: 'Observation',
        ledger: [],
        quarantine: [],
        changeLog: [change('Observation/o', 'v1', 'o1')],
      });
      const first = await store.readChangeLog('f', 'Patient', undefined, 0, 2);
      expect(first.map((e) => [e.stream, e.ref, e.versionKey, e.payload])).toEqual([
        ['Patient', 'Patient/b', 'v1', 'b1'],
        ['Patient', 'Patient/a', 'v1', 'a1'],
      ]);
      expect(first[0]?.lastUpdated).toBeUndefined();
      expect(first[0]!.seq).toBeLessThan(first[1]!.seq);
      const rest = await store.readChangeLog('f', 'Patient', undefined, first[1]!.seq, 10);
      expect(rest.map((e) => [e.ref, e.versionKey, e.payload])).toEqual([
        ['Patient/a', 'v2', 'a2'],
        ['Patient/c', 'v1', 'c1'],
      ]);
      expect(await store.readChangeLog('f', 'Patient', undefined, rest[1]!.seq, 10)).toEqual([]);
      expect(await store.readChangeLog('g', 'Patient', undefined, 0, 10)).toEqual([]);
      await store.close();
    });

    it('commits ledger, quarantine and checkpoint together, and upserts the ledger', async () => {
      const store = await open();
      await store.commitPage({
        ledger: [ledgerEntry('a'), ledgerEntry('b')],
        quarantine: [
          {
            flow: 'f',
            runId: 'r1',
            stream: 'Organization',
            stage: 'validate',
            code: 'REC_INVALID_FHIR',
            issues: [
              { severity: 'error', code: 'REC_INVALID_FHIR', path: 'Organization.name', message: 'bad' },
            ],
            origin: 'page 1 entry 3',
            payload: '{}',
          },
        ],
        checkpoint: {
          flow: 'f',
          stream: 'Organization',
          position: '2026-11-23T00:00:00Z',
          definitionHash: 'd',
          environment: 'e',
          runId: 'r1',
          updatedAt: 'x',
        },
      });
      await store.commitPage({ ledger: [ledgerEntry('a', 'h2')], quarantine: [] });
      const ledger = await store.getLedger('f', 'Account', ['a', 'b', 'c']);
      expect([...ledger.keys()].sort()).toEqual(['a', 'b']);
      expect(ledger.get('a')?.payloadHash).toBe('h2');
      expect(await store.countQuarantine('f', 'open')).toBe(1);
      expect((await store.getCheckpoint('f', 'Organization'))?.position).toBe('2026-11-23T00:00:00Z');
      await store.close();
    });

    it('answers ledger lookups in the order asked, the last entry of a page for a key winning', async () => {
      const store = await open();
      await store.commitPage({
        ledger: [ledgerEntry('a', 'h1'), ledgerEntry('b'), ledgerEntry('a', 'h3')],
        quarantine: [],
      });
      const found = await store.getLedger('f', 'Account', ['c', 'b', 'a', 'b']);
      expect([...found.keys()]).toEqual(['b', 'a']);
      expect(found.get('a')).toEqual(ledgerEntry('a', 'h3'));
      expect((await store.getLedger('f', 'Account', [])).size).toBe(0);
      expect((await store.getLedger('f', 'Contact', ['a'])).size).toBe(0);
      expect(await store.countLedger('f')).toBe(2);
      expect(await store.countLedger('g')).toBe(0);
      await store.close();
    });

    it('walks the ledger a page at a time in byte order, and finds the entries of a source', async () => {
      const store = await open();
      // Byte order, whatever a database's collation would say: upper case first, '-' before letters.
      const ids = ['ab', 'a-b', 'B', 'b', 'é', 'a'];
      await store.commitPage({
        ledger: [
          ...ids.map((id) => ledgerEntry(id)),
          { ...ledgerEntry('x'), object: 'Address_vod__c', sourceRef: 'Organization/a' },
          { ...ledgerEntry('w'), object: 'Address_vod__c', sourceRef: 'Organization/a' },
          { ...ledgerEntry('z'), flow: 'g' },
        ],
        quarantine: [],
      });
      const walked: string[] = [];
      let after: { object: string; externalId: string } | undefined;
      for (;;) {
        const page = await store.listLedger('f', after, 3);
        if (page.length === 0) break;
        walked.push(...page.map((e) => `${e.object}/${e.externalId}`));
        const last = page.at(-1)!;
        after = { object: last.object, externalId: last.externalId };
      }
      expect(walked).toEqual([
        'Account/B',
        'Account/a',
        'Account/a-b',
        'Account/ab',
        'Account/b',
        'Account/é',
        'Address_vod__c/w',
        'Address_vod__c/x',
      ]);
      // By object, last first (addresses before their account), then by external id.
      expect(
        (await store.ledgerBySource('f', 'Organization/a')).map((e) => `${e.object}/${e.externalId}`),
      ).toEqual(['Address_vod__c/w', 'Address_vod__c/x', 'Account/a']);
      expect(await store.ledgerBySource('g', 'Organization/a')).toEqual([]);
      await store.close();
    });

    it('lists checkpoints by stream and deletes those of one flow', async () => {
      const store = await open();
      const checkpoint = (flow: string, stream: string, position: string) => ({
        flow,
        stream,
        position,
        definitionHash: 'd',
        environment: 'e',
        runId: 'r1',
        updatedAt: '2026-11-23T00:00:00.000Z',
      });
      for (const [flow, stream] of [
        ['f', 'Patient'],
        ['f', 'Consent'],
        ['g', 'Patient'],
      ] as const) {
        await store.commitPage({ ledger: [], quarantine: [], checkpoint: checkpoint(flow, stream, '1') });
      }
      await store.commitPage({ ledger: [], quarantine: [], checkpoint: checkpoint('f', 'Patient', '2') });
      expect(await store.listCheckpoints('f')).toEqual([
        checkpoint('f', 'Consent', '1'),
        checkpoint('f', 'Patient', '2'),
      ]);
      expect(await store.getCheckpoint('f', 'Observation')).toBeUndefined();
      expect(await store.deleteCheckpoints('f')).toBe(2);
      expect(await store.listCheckpoints('f')).toEqual([]);
      expect(await store.getCheckpoint('g', 'Patient')).toEqual(checkpoint('g', 'Patient', '1'));

      // A source's own place beside the time (an event bus's sequence) is kept with it, and a
      // checkpoint without one clears it.
      const withCursor = { ...checkpoint('g', 'Consent', '3'), cursor: '1207' };
      await store.commitPage({ ledger: [], quarantine: [], checkpoint: withCursor });
      expect(await store.getCheckpoint('g', 'Consent')).toEqual(withCursor);
      expect(await store.listCheckpoints('g')).toEqual([withCursor, checkpoint('g', 'Patient', '1')]);
      await store.commitPage({ ledger: [], quarantine: [], checkpoint: checkpoint('g', 'Consent', '4') });
      expect(await store.getCheckpoint('g', 'Consent')).toEqual(checkpoint('g', 'Consent', '4'));
      await store.close();
    });

    it('remembers processed versions, finds refs by person in order, and forgets them', async () => {
      const store = await open();
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [],
        seen: [
          { ref: 'Patient/b', versionKey: 'v1', outcome: 'delivered', subject: 's1' },
          { ref: 'Patient/a', versionKey: 'v1', outcome: 'withheld', subject: 's1' },
          { ref: 'Patient/c', versionKey: 'v1', outcome: 'withheld', subject: 's2' },
          { ref: 'Patient/d', versionKey: 'v1', outcome: 'delivered' },
          // The same record again in the page: the last version stands.
          { ref: 'Patient/b', versionKey: 'v2', outcome: 'withheld', subject: 's1' },
        ],
      });
      await store.commitPage({
        flow: 'f',
        stream: 'Observation',
        ledger: [],
        quarantine: [],
        seen: [{ ref: 'Observation/o', versionKey: 'v1', outcome: 'withheld', subject: 's1' }],
      });
      const seen = await store.getSeen('f', 'Patient', ['Patient/x', 'Patient/b', 'Patient/d']);
      expect([...seen.entries()]).toEqual([
        ['Patient/b', { ref: 'Patient/b', versionKey: 'v2', outcome: 'withheld' }],
        ['Patient/d', { ref: 'Patient/d', versionKey: 'v1', outcome: 'delivered' }],
      ]);
      expect((await store.getSeen('f', 'Patient', [])).size).toBe(0);
      // Each person in the order asked, each person's refs in order.
      expect(await store.withheldRefsOf('f', 'Patient', ['s2', 's1', 's9'])).toEqual([
        'Patient/c',
        'Patient/a',
        'Patient/b',
      ]);
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [],
        seen: [{ ref: 'Patient/a', versionKey: 'v2', outcome: 'delivered', subject: 's1' }],
      });
      expect(await store.withheldRefsOf('f', 'Patient', ['s1'])).toEqual(['Patient/b']);
      expect(await store.refsOfSubjects('f', 'Patient', ['s1', 's2'])).toEqual([
        'Patient/a',
        'Patient/b',
        'Patient/c',
      ]);
      expect(await store.refsOfSubjects('f', 'Patient', [])).toEqual([]);
      await store.forgetSeen('f', 'Patient', ['Patient/a', 'Patient/d', 'Patient/none']);
      expect([
        ...(await store.getSeen('f', 'Patient', ['Patient/a', 'Patient/b', 'Patient/d'])).keys(),
      ]).toEqual(['Patient/b']);
      expect(await store.refsOfSubjects('f', 'Observation', ['s1'])).toEqual(['Observation/o']);
      await store.close();
    });

    it("reads a flow's consents synchronously, with later pages and other processes' pages", async () => {
      const store = await open();
      await store.commitPage(
        consentPage('f', [
          { key: 'c1', subject: 's1', state: '{"n":1}' },
          { key: 'c2', subject: 's2', state: '{"n":2}' },
        ]),
      );
      await store.commitPage(consentPage('g', [{ key: 'c1', subject: 's9', state: '{"g":1}' }]));
      expect(store.consentLookup).toBeDefined();
      const lookup = await (store.consentLookup as NonNullable<StateStore['consentLookup']>)('f');
      expect(lookup.count()).toBe(2);
      expect(lookup.statesOf('s1')).toEqual(['{"n":1}']);
      expect(lookup.subjectOf('c2')).toBe('s2');
      expect(lookup.subjectOf('c9')).toBeUndefined();
      // Another flow's consents are not this flow's.
      expect(lookup.snapshot(() => [lookup.statesOf('s9'), lookup.count()])).toEqual([[], 2]);

      // A page committed later is read at once: a consent moved to another person, one added.
      await store.commitPage(
        consentPage('f', [
          { key: 'c2', subject: 's1', state: '{"n":3}' },
          { key: 'c3', subject: 's3', state: '{"n":4}' },
        ]),
      );
      expect(lookup.count()).toBe(3);
      expect(lookup.statesOf('s1').sort()).toEqual(['{"n":1}', '{"n":3}']);
      expect(lookup.statesOf('s2')).toEqual([]);
      expect(lookup.subjectOf('c2')).toBe('s1');

      // What another process committed is read once the lookup is asked for again (a run's start).
      const other = await store.reopen();
      await other.commitPage(
        consentPage('f', [
          { key: 'c4', subject: 's4', state: '{"n":5}' },
          { key: 'c1', subject: 's1', state: '{"n":6}' },
        ]),
      );
      const again = await (store.consentLookup as NonNullable<StateStore['consentLookup']>)('f');
      expect(again.count()).toBe(4);
      expect(again.statesOf('s4')).toEqual(['{"n":5}']);
      expect(again.statesOf('s1').sort()).toEqual(['{"n":3}', '{"n":6}']);
      // …and a process starting afresh reads them all.
      const fresh = await (other.consentLookup as NonNullable<StateStore['consentLookup']>)('f');
      expect(fresh.snapshot(() => ['s1', 's2', 's3', 's4'].map((p) => fresh.statesOf(p).sort()))).toEqual([
        ['{"n":3}', '{"n":6}'],
        [],
        ['{"n":4}'],
        ['{"n":5}'],
      ]);
      await other.close();
      await store.close();
    });

    it('keeps the consents a flow read, by key, the last of a page winning', async () => {
      const store = await open();
      await store.commitPage({
        flow: 'f',
        stream: 'Consent',
        ledger: [],
        quarantine: [],
        consents: [
          { key: 'c2', subject: 's1', state: '{"n":1}' },
          { key: 'c1', subject: 's1', state: '{"n":2}' },
          { key: 'c2', subject: 's2', state: '{"n":3}' },
        ],
      });
      await store.commitPage({
        flow: 'g',
        stream: 'Consent',
        ledger: [],
        quarantine: [],
        consents: [{ key: 'c1', subject: 's9', state: '{}' }],
      });
      expect(await store.listConsents('f')).toEqual([
        { key: 'c1', subject: 's1', state: '{"n":2}' },
        { key: 'c2', subject: 's2', state: '{"n":3}' },
      ]);
      await store.commitPage({
        flow: 'f',
        stream: 'Consent',
        ledger: [],
        quarantine: [],
        consents: [{ key: 'c1', subject: 's1', state: '{"n":4}' }],
      });
      expect((await store.listConsents('f')).map((c) => c.state)).toEqual(['{"n":4}', '{"n":3}']);
      expect(await store.listConsents('h')).toEqual([]);
      await store.close();
    });

    it('records batch manifests, newest first, a batch written again replacing the first', async () => {
      const store = await open();
      const t = '2026-11-23T10:00:00.000Z';
      await store.commitPage({
        ledger: [],
        quarantine: [],
        batches: [
          batch('b1', t, { jws: 'h.p.s', batchKey: 'TREAT|all|p1|hcp|eu' }),
          batch('b2', t),
          batch('b0', '2026-11-23T09:00:00.000Z'),
          { ...batch('bg', t), flow: 'g' },
        ],
      });
      expect((await store.listBatches('f')).map((b) => b.batchId)).toEqual(['b2', 'b1', 'b0']);
      expect(await store.getBatch('b1')).toEqual(
        batch('b1', t, { jws: 'h.p.s', batchKey: 'TREAT|all|p1|hcp|eu' }),
      );
      expect(await store.getBatch('b2')).toEqual(batch('b2', t));
      expect(await store.getBatch('none')).toBeUndefined();
      // Written again (a retried page): replaced whole, and now the latest of its time.
      await store.commitPage({
        ledger: [],
        quarantine: [],
        batches: [batch('b1', t, { results: { created: 1, rejected: 1 } })],
      });
      expect((await store.listBatches('f')).map((b) => b.batchId)).toEqual(['b1', 'b2', 'b0']);
      expect(await store.getBatch('b1')).toEqual(batch('b1', t, { results: { created: 1, rejected: 1 } }));
      expect((await store.listBatches('f', 1)).map((b) => b.batchId)).toEqual(['b1']);
      expect((await store.listBatches('g')).map((b) => b.batchId)).toEqual(['bg']);
      await store.close();
    });

    it('selects and counts quarantine entries, oldest first, then in the order recorded', async () => {
      const store = await open();
      const entry = (origin: string, extra: Partial<NewQuarantineEntry> = {}): NewQuarantineEntry => ({
        ...invalidPatient('{}'),
        origin,
        ...extra,
      });
      await store.commitPage({
        ledger: [],
        quarantine: [
          entry('3', { code: 'MAP_REQUIRED_MISSING', stage: 'map', sourceRef: 'Patient/p3' }),
          entry('1', { sourceRef: 'Patient/p1', policyVersion: 'allow@1' }),
          entry('2', { runId: 'r2', stream: 'Observation' }),
        ],
        recordedAt: '2026-11-23T10:00:00.000Z',
      });
      await store.commitPage({
        ledger: [],
        quarantine: [entry('0'), entry('9', { flow: 'g' })],
        recordedAt: '2026-11-23T09:00:00.000Z',
      });
      const origins = async (filter: Parameters<StateStore['listQuarantine']>[0]) =>
        (await store.listQuarantine(filter)).map((e) => e.origin);
      expect(await origins({ flow: 'f' })).toEqual(['0', '3', '1', '2']);
      expect(await origins({})).toEqual(['0', '9', '3', '1', '2']);
      expect(await origins({ flow: 'f', limit: 2 })).toEqual(['0', '3']);
      expect(await origins({ flow: 'f', code: 'REC_INVALID_FHIR', stream: 'Patient' })).toEqual(['0', '1']);
      expect(await origins({ sourceRef: 'Patient/p1' })).toEqual(['1']);
      expect(await origins({ runId: 'r2' })).toEqual(['2']);
      expect(await store.countQuarantineMatching({ flow: 'f', code: 'REC_INVALID_FHIR' })).toBe(3);
      expect(await store.countQuarantineMatching({})).toBe(5);
      const [one] = await store.listQuarantine({ sourceRef: 'Patient/p1' });
      expect(one).toMatchObject({
        flow: 'f',
        runId: 'r1',
        stream: 'Patient',
        stage: 'validate',
        code: 'REC_INVALID_FHIR',
        issues: [],
        origin: '1',
        sourceRef: 'Patient/p1',
        policyVersion: 'allow@1',
        createdAt: '2026-11-23T10:00:00.000Z',
        status: 'open',
        payloadKept: true,
      });
      expect(await store.getQuarantine(String(one?.id))).toEqual(one);
      expect(await store.getQuarantine('no-such-entry')).toBeUndefined();
      expect(await store.setQuarantineStatus(String(one?.id), 'discarded')).toBe(true);
      expect(await store.countQuarantine('f')).toBe(4);
      expect(await store.countQuarantine('f', 'open')).toBe(3);
      expect(await store.countQuarantineByCode('f', 'open')).toEqual({
        REC_INVALID_FHIR: 2,
        MAP_REQUIRED_MISSING: 1,
      });
      expect(Object.keys(await store.countQuarantineByCode('f', 'open'))).toEqual([
        'REC_INVALID_FHIR',
        'MAP_REQUIRED_MISSING',
      ]);
      expect(await store.countQuarantineByCode('f', 'discarded')).toEqual({ REC_INVALID_FHIR: 1 });
      expect(await origins({ flow: 'f', status: 'open' })).toEqual(['0', '3', '2']);
      await store.close();
    });

    it('records runs, newest first, and forgets a run', async () => {
      const store = await open();
      const t = '2026-11-23T10:00:00.000Z';
      await store.startRun({ runId: 'r-old', flow: 'f', startedAt: '2026-11-23T09:00:00.000Z' });
      // Two runs started in the same millisecond: the one recorded later comes first.
      await store.startRun({ runId: 'r-z', flow: 'f', startedAt: t });
      await store.startRun({ runId: 'r-a', flow: 'f', startedAt: t });
      await store.startRun({ runId: 'r-g', flow: 'g', startedAt: t });
      await store.finishRun({
        runId: 'r-z',
        finishedAt: '2026-11-23T10:01:00.000Z',
        status: 'succeeded',
        summary: '{"delivered":1}',
      });
      expect(await store.listRuns('f')).toEqual([
        { runId: 'r-a', flow: 'f', startedAt: t, status: 'running' },
        {
          runId: 'r-z',
          flow: 'f',
          startedAt: t,
          finishedAt: '2026-11-23T10:01:00.000Z',
          status: 'succeeded',
          summary: '{"delivered":1}',
        },
        { runId: 'r-old', flow: 'f', startedAt: '2026-11-23T09:00:00.000Z', status: 'running' },
      ]);
      expect((await store.listRuns('f', 1)).map((r) => r.runId)).toEqual(['r-a']);
      await store.forgetRun('r-a');
      expect((await store.listRuns('f')).map((r) => r.runId)).toEqual(['r-z', 'r-old']);
      await expect(store.startRun({ runId: 'r-z', flow: 'f', startedAt: t })).rejects.toThrow();
      await store.close();
    });

    it('engages a flow kill switch once, keeping its first reason, and releases it', async () => {
      const store = await open();
      expect(await store.getHalt('f')).toBeUndefined();
      expect(await store.setHalt('f', { reason: 'INCIDENT', engagedAt: '2026-11-23T10:00:00.000Z' })).toBe(
        true,
      );
      expect(await store.setHalt('f', { reason: 'OTHER', engagedAt: '2026-11-23T11:00:00.000Z' })).toBe(
        false,
      );
      expect(await store.getHalt('f')).toEqual({ reason: 'INCIDENT', engagedAt: '2026-11-23T10:00:00.000Z' });
      expect(await store.getHalt('g')).toBeUndefined();
      expect(await store.setHalt('f', undefined)).toBe(true);
      expect(await store.setHalt('f', undefined)).toBe(false);
      expect(await store.getHalt('f')).toBeUndefined();
      await store.close();
    });

    it('keeps refused removals with their attempts, and drops them when removed or delivered again', async () => {
      const store = await open();
      const refusal = (externalId: string, attemptedAt: string) => ({
        flow: 'f',
        object: 'Account',
        externalId,
        targetId: `id-${externalId}`,
        sourceRef: `Organization/${externalId}`,
        cause: 'source-deletion' as const,
        codes: ['DELETE_FAILED'],
        runId: 'r1',
        attemptedAt,
        nextAttemptAt: new Date(Date.parse(attemptedAt) + 60_000).toISOString(),
      });
      const t0 = '2026-12-07T00:00:00.000Z';
      const t1 = '2026-12-07T01:00:00.000Z';
      await store.commitPage({
        flow: 'f',
        stream: 'Organization',
        ledger: ['a', 'b', 'c'].map((id) => ledgerEntry(id)),
        quarantine: [],
        refusedRemovals: [refusal('a', t0), refusal('b', t0), refusal('c', t0)],
      });
      // Refused again: one more attempt, first refusal kept.
      await store.settleRefusedRemovals('f', {
        removed: [],
        refused: [{ ...refusal('a', t1), codes: ['X'] }],
      });
      expect(await store.countRefusedRemovals('f')).toEqual({ count: 3, oldest: t0 });
      expect(await store.listRefusedRemovals('f', { dueBy: '2026-12-07T00:30:00.000Z' })).toMatchObject([
        { externalId: 'b' },
        { externalId: 'c' },
      ]);
      const [a] = await store.listRefusedRemovals('f');
      expect(a).toMatchObject({
        externalId: 'a',
        attempts: 2,
        firstRefusedAt: t0,
        lastAttemptAt: t1,
        codes: ['X'],
      });
      // b is deleted by a later page, c delivered again: neither is to be removed any more.
      await store.commitPage({
        flow: 'f',
        stream: 'Organization',
        ledger: [],
        quarantine: [],
        ledgerDeletes: [{ object: 'Account', externalId: 'b' }],
        keptTargets: [{ object: 'Account', externalId: 'c' }],
      });
      expect((await store.listRefusedRemovals('f')).map((r) => r.externalId)).toEqual(['a']);
      // a is removed at last: its ledger row goes with it; another flow's rows are untouched.
      await store.settleRefusedRemovals('f', {
        removed: [{ object: 'Account', externalId: 'a' }],
        refused: [],
      });
      expect(await store.countRefusedRemovals('f')).toEqual({ count: 0 });
      expect((await store.getLedger('f', 'Account', ['a', 'b', 'c'])).size).toBe(1);
      await store.close();
    });

    it('counts two refusals of one record in a page as two attempts, and selects refusals by source', async () => {
      const store = await open();
      const refusal = (externalId: string, attemptedAt: string, because?: string) => ({
        flow: 'f',
        object: 'Account',
        externalId,
        targetId: `id-${externalId}`,
        sourceRef: `Organization/${externalId}`,
        cause: 'withheld-retraction' as const,
        ...(because === undefined ? {} : { because }),
        codes: ['LOCKED'],
        runId: 'r1',
        attemptedAt,
        nextAttemptAt: attemptedAt,
      });
      await store.commitPage({
        flow: 'f',
        stream: 'Organization',
        ledger: [],
        quarantine: [],
        refusedRemovals: [
          refusal('a', '2026-12-07T00:00:00.000Z'),
          refusal('b', '2026-12-07T00:00:00.000Z', 'consent'),
          refusal('a', '2026-12-07T00:05:00.000Z'),
        ],
      });
      expect(await store.listRefusedRemovals('f', { sourceRef: 'Organization/a' })).toEqual([
        {
          flow: 'f',
          object: 'Account',
          externalId: 'a',
          targetId: 'id-a',
          sourceRef: 'Organization/a',
          cause: 'withheld-retraction',
          codes: ['LOCKED'],
          runId: 'r1',
          firstRefusedAt: '2026-12-07T00:00:00.000Z',
          lastAttemptAt: '2026-12-07T00:05:00.000Z',
          attempts: 2,
          nextAttemptAt: '2026-12-07T00:05:00.000Z',
        },
      ]);
      expect((await store.listRefusedRemovals('f', { limit: 1 })).map((r) => r.externalId)).toEqual(['a']);
      expect((await store.listRefusedRemovals('f', { sourceRef: 'Organization/b' }))[0]?.because).toBe(
        'consent',
      );
      expect(await store.countRefusedRemovals('g')).toEqual({ count: 0 });
      await store.close();
    });

    it('rolls a failing page back entirely', async () => {
      const store = await open();
      const bad = { ...ledgerEntry('z'), payloadHash: null as unknown as string };
      await expect(
        store.commitPage({ ledger: [ledgerEntry('y'), bad], quarantine: [] }),
      ).rejects.toMatchObject({
        code: 'STORE_WRITE_FAILED',
      });
      expect(await store.countLedger('f')).toBe(0);
      await store.close();
    });

    it('refuses a page that names no flow or stream for rows that need them, keeping none of it', async () => {
      const store = await open();
      await expect(
        store.commitPage({
          ledger: [ledgerEntry('a')],
          quarantine: [invalidPatient('{}')],
          seen: [{ ref: 'Patient/a', versionKey: 'v1', outcome: 'delivered' }],
        }),
      ).rejects.toMatchObject({ code: 'STORE_WRITE_FAILED' });
      await expect(
        store.commitPage({
          ledger: [ledgerEntry('b')],
          quarantine: [],
          keptTargets: [{ object: 'Account', externalId: 'b' }],
        }),
      ).rejects.toMatchObject({ code: 'STORE_WRITE_FAILED' });
      expect(await store.countLedger('f')).toBe(0);
      expect(await store.countQuarantine('f')).toBe(0);
      await store.close();
    });

    it('stamps a page with the store clock', async () => {
      const clock = '2020-01-02T03:04:05.000Z';
      const store = await open({ now: () => new Date(clock) });
      const entry = invalidPatient('{}');
      await store.commitPage({ flow: 'f', stream: 'Patient', ledger: [], quarantine: [entry] });
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [{ ...entry, origin: 'page 2 record 1' }],
        recordedAt: '2021-05-06T07:08:09.000Z',
      });
      const stamped = (await store.listQuarantine({ flow: 'f' })).map((q) => [q.origin, q.createdAt]).sort();
      expect(stamped).toEqual([
        ['page 1 record 1', clock],
        ['page 2 record 1', '2021-05-06T07:08:09.000Z'],
      ]);
      await store.close();
    });

    it('seals quarantined records and change-log copies under the flow key', async () => {
      const [patient] = await syntheaPatients();
      const plain = JSON.stringify(patient);
      const family = String((patient?.name as { family?: string }[] | undefined)?.[0]?.family);
      const key = payloadKey(randomBytes(32), 'state-1');
      const store = await open({ payloadKey: key });
      const quarantined = invalidPatient(plain);
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [quarantined],
        changeLog: [{ ref: `Patient/${String(patient?.id)}`, versionKey: 'v:1|x', payload: plain }],
      });
      // Read back whole under the key …
      const [entry] = await store.listQuarantine({ flow: 'f' });
      expect(entry?.payloadKept).toBe(true);
      expect(await store.readQuarantinePayload(String(entry?.id))).toBe(plain);
      expect((await store.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.payload)).toEqual([
        plain,
      ]);
      await store.close();
      // … while nothing of the patient is stored in the clear (nor in the file or its WAL, where told).
      const stored = await store.storedPayloads();
      expect(stored).toHaveLength(2);
      for (const value of stored) expect(value.startsWith('sluice-enc1:state-1:')).toBe(true);
      for (const value of stored) expect(value.includes(family)).toBe(false);
      const bytes = await store.bytesAtRest?.();
      if (bytes !== undefined) expect(bytes.includes(family)).toBe(false);
      // Without the key, or under another, no record reads; what was quarantined and why still lists.
      const locked = await store.reopen();
      expect(await locked.listQuarantine({ flow: 'f' })).toEqual([entry]);
      expect(await locked.getQuarantine(String(entry?.id))).toEqual(entry);
      await expect(locked.readQuarantinePayload(String(entry?.id))).rejects.toMatchObject({
        code: 'STATE_PAYLOAD_LOCKED',
      });
      await expect(locked.readChangeLog('f', 'Patient', undefined, 0, 10)).rejects.toMatchObject({
        code: 'STATE_PAYLOAD_LOCKED',
      });
      await locked.close();
      const other = await store.reopen({ payloadKey: payloadKey(randomBytes(32), 'state-2') });
      await expect(other.readQuarantinePayload(String(entry?.id))).rejects.toMatchObject({
        code: 'STATE_PAYLOAD_KEY_MISMATCH',
      });
      await other.close();
    });

    it('erases the record when an entry is released or discarded, keeping its SHA-256', async () => {
      const patients = (await syntheaPatients()).slice(0, 3);
      // The first record is larger than a database page: most of it lives in overflow pages.
      const div = `<div xmlns="http://www.w3.org/1999/xhtml">${'x'.repeat(12_000)}</div>`;
      const plains = patients.map((patient, i) =>
        JSON.stringify(i === 0 ? { ...patient, text: { status: 'generated', div } } : patient),
      );
      const ids = patients.map((patient) => String(patient.id));
      const closedAt = '2026-12-06T10:00:00.000Z';
      const store = await open({ now: () => new Date(closedAt) });
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: plains.map(invalidPatient),
        recordedAt: closedAt,
      });
      const [released, discarded, open_] = await store.listQuarantine({ flow: 'f' });
      if (!released || !discarded || !open_) throw new Error('three entries expected');
      expect(released.payloadSha256).toBe(
        createHash('sha256')
          .update(plains[0] as string)
          .digest('hex'),
      );
      expect(await store.setQuarantineStatus(released.id, 'released')).toBe(true);
      expect(await store.setQuarantineStatus(discarded.id, 'discarded')).toBe(true);
      // A closed entry stays closed.
      expect(await store.setQuarantineStatus(discarded.id, 'released')).toBe(false);
      expect(await store.setQuarantineStatus('no-such-entry', 'discarded')).toBe(false);
      const after = await store.listQuarantine({ flow: 'f' });
      expect(after.map((e) => [e.status, e.payloadKept, e.closedAt])).toEqual([
        ['released', false, closedAt],
        ['discarded', false, closedAt],
        ['open', true, undefined],
      ]);
      expect(after.map((e) => e.payloadSha256)).toEqual([
        released.payloadSha256,
        discarded.payloadSha256,
        open_.payloadSha256,
      ]);
      expect(await store.readQuarantinePayload(released.id)).toBeUndefined();
      expect(await store.readQuarantinePayload(discarded.id)).toBeUndefined();
      expect(await store.readQuarantinePayload(open_.id)).toBe(plains[2]);
      await store.close();
      expect((await store.storedPayloads()).sort()).toEqual(['', '', plains[2]].sort());
      // The closed records are gone from the database file and its WAL, not just from the rows.
      const bytes = await store.bytesAtRest?.();
      if (bytes !== undefined) {
        expect(bytes.includes(ids[0] as string)).toBe(false);
        expect(bytes.includes('x'.repeat(1000))).toBe(false);
        expect(bytes.includes(ids[1] as string)).toBe(false);
        expect(bytes.includes(ids[2] as string)).toBe(true);
      }
    });

    it('supersedes the open entries of a record a later page processed, erasing their records', async () => {
      const [patient] = await syntheaPatients();
      const ref = `Patient/${String(patient?.id)}`;
      // Larger than a page; flow f's copy padded with 'z', flow g's with 'q'.
      const padded = (c: string) =>
        JSON.stringify({ ...patient, text: { status: 'generated', div: `<div>${c.repeat(12_000)}</div>` } });
      const held = { ...invalidPatient(padded('z')), sourceRef: ref };
      const store = await open();
      await store.commitPage({ flow: 'f', stream: 'Patient', ledger: [], quarantine: [held] });
      // Another stream's record of the same id, and another flow, are not touched.
      await store.commitPage({
        flow: 'g',
        stream: 'Patient',
        ledger: [],
        quarantine: [{ ...held, flow: 'g', payload: padded('q') }],
      });
      // The next version is quarantined again in the same page that supersedes the first.
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [{ ...held, payload: '{"resourceType":"Patient"}', origin: 'page 2 record 1' }],
        supersedes: [ref, 'Patient/unknown'],
      });
      await store.commitPage({
        flow: 'f',
        stream: 'Observation',
        ledger: [],
        quarantine: [],
        supersedes: [ref],
      });
      const entries = await store.listQuarantine({});
      expect(entries.map((e) => [e.flow, e.origin, e.status, e.payloadKept])).toEqual([
        ['f', 'page 1 record 1', 'superseded', false],
        ['g', 'page 1 record 1', 'open', true],
        ['f', 'page 2 record 1', 'open', true],
      ]);
      expect(entries[0]?.closedAt).toBeDefined();
      expect(await store.readQuarantinePayload(String(entries[0]?.id))).toBeUndefined();
      expect(await store.readQuarantinePayload(String(entries[1]?.id))).toBe(padded('q'));
      await store.close();
      const bytes = await store.bytesAtRest?.();
      if (bytes !== undefined) {
        expect(bytes.includes('z'.repeat(1000))).toBe(false);
        expect(bytes.includes('q'.repeat(1000))).toBe(true);
      }
    });

    it('prunes change-log copies older than the cut, leaving no trace of them where told', async () => {
      const [first, second] = await syntheaPatients();
      const div = `<div xmlns="http://www.w3.org/1999/xhtml">${'y'.repeat(12_000)}</div>`;
      const old = JSON.stringify({ ...first, text: { status: 'generated', div } });
      const store = await open();
      const page = (flow: string, ref: string, payload: string, recordedAt: string) =>
        store.commitPage({
          flow,
          stream: 'Patient',
          ledger: [],
          quarantine: [],
          changeLog: [{ ref, versionKey: 'v:1|x', payload }],
          recordedAt,
        });
      await page('f', `Patient/${String(first?.id)}`, old, '2026-10-01T00:00:00.000Z');
      await page('f', `Patient/${String(second?.id)}`, JSON.stringify(second), '2026-12-01T00:00:00.000Z');
      await page('g', 'Patient/other', '{}', '2026-10-01T00:00:00.000Z');
      expect(await store.pruneChangeLog('f', '2026-11-01T00:00:00.000Z')).toBe(1);
      expect(await store.pruneChangeLog('f', '2026-11-01T00:00:00.000Z')).toBe(0);
      expect((await store.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.ref)).toEqual([
        `Patient/${String(second?.id)}`,
      ]);
      expect((await store.readChangeLog('g', 'Patient', undefined, 0, 10)).map((e) => e.ref)).toEqual([
        'Patient/other',
      ]);
      await store.close();
      const bytes = await store.bytesAtRest?.();
      if (bytes !== undefined) {
        expect(bytes.includes(String(first?.id))).toBe(false);
        expect(bytes.includes('y'.repeat(1000))).toBe(false);
        expect(bytes.includes(String(second?.id))).toBe(true);
      }
    });

    it('reads record copies stored before a key was configured', async () => {
      const before = await open();
      await before.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [invalidPatient('{"resourceType":"Patient","id":"q"}')],
        changeLog: [
          { ref: 'Patient/a', versionKey: 'v:1|x', payload: '{"resourceType":"Patient","id":"a"}' },
        ],
      });
      await before.close();
      const after = await before.reopen({ payloadKey: payloadKey(randomBytes(32), 'state-1') });
      expect((await after.readChangeLog('f', 'Patient', undefined, 0, 10))[0]?.payload).toBe(
        '{"resourceType":"Patient","id":"a"}',
      );
      const [entry] = await after.listQuarantine({ flow: 'f' });
      expect(await after.readQuarantinePayload(String(entry?.id))).toBe(
        '{"resourceType":"Patient","id":"q"}',
      );
      await after.close();
    });

    it('keeps provenance as facts and returns whole FHIR Provenance, older resource rows included', async () => {
      const store = await open();
      const facts = (id: string, recorded: string, consent: boolean): ProvenanceFacts => ({
        id,
        recorded,
        flow: 'f',
        runId: 'r1',
        sourceSystem: 'epic',
        targetSystem: 'veeva',
        entity: 'pabcdefghijklmnopqrstuvwxyz234567',
        versionKey: 'v:3|2026-11-20T10:00:00.000Z',
        origin: 'export Patient.ndjson line 7',
        readAt: '2026-11-23T09:00:00.000Z',
        readBy: 'sluice-client',
        mappingVersion: 'patient@2',
        validation: 'valid',
        ...(consent ? { consent: { decision: 'permit', policy: 'p-1', basis: 'Consent/c1' } } : {}),
        anonymization: 'pseudonymised; birth year, ZIP3, gender only',
        batchId: 'b-1',
        purpose: 'TREAT',
        targets: [
          { object: 'Patient_Profile__c', externalId: 'pabcdefghijklmnopqrstuvwxyz234567' },
          { object: 'Address_vod__c', externalId: 'x-2' },
        ],
      });
      const second = facts('prov-2', '2026-11-23T09:05:00.000Z', true);
      // Recorded in the same millisecond: kept in the order written.
      const third = { ...second, id: 'prov-3' };
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [],
        provenance: [second, third],
      });
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [],
        provenance: [{ ...second, id: 'prov-other', entity: 'Organization/o1' }],
      });
      // A row written as a whole resource by an earlier version of the store, before the facts.
      const older = buildProvenance(facts('prov-1', '2026-11-22T08:00:00.000Z', false));
      await store.insertProvenanceResource({
        flow: 'f',
        entity: second.entity,
        runId: 'r0',
        recordedAt: '2026-11-22T08:00:00.000Z',
        resource: JSON.stringify(older),
      });
      // Facts are a few hundred bytes, not the resource.
      const stored = await store.storedFacts(second.entity);
      expect(stored).toHaveLength(2);
      for (const value of stored)
        expect(value.length).toBeLessThan(JSON.stringify(buildProvenance(second)).length / 2);
      await store.close();

      const reopened = await store.reopen();
      const out = await reopened.provenanceOf('f', second.entity);
      expect(out).toEqual([older, buildProvenance(second), buildProvenance(third)]);
      for (const resource of out)
        expect(validateFast(resource).filter((i) => i.severity === 'error')).toEqual([]);
      expect(JSON.stringify(out[1])).toContain('"valueCode":"consent"');
      expect((await reopened.provenanceOf('f', 'Organization/o1')).map((r) => r.id)).toEqual(['prov-other']);
      expect(await reopened.provenanceOf('other-flow', second.entity)).toEqual([]);
      await reopened.close();
    });
  });
}
