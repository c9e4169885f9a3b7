import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import type { JsonObject } from '../../core/fhir/resource.ts';
import { syntheaPatients, TEST_PSEUDONYM_KEY } from '../../core/matrix/testing.ts';
import { asSystemName } from '../../core/model/ids.ts';
import type { Source, SourcePage } from '../../core/ports/source.ts';
import { privacyConsent } from '../../testkit/consents.ts';
import { dropSchemas, PG_SKIP, TEST_PG_URL, testSchema } from '../../testkit/postgres.ts';
import { PostgresStateStore } from '../store/pg-store.ts';
import { SqliteStateStore } from '../store/sqlite-store.ts';
import type { StateStore, StoredConsent } from '../store/state-store.ts';
import { ConsentGate, type ConsentSettings } from './consent-gate.ts';

const SETTINGS: ConsentSettings = {
  purpose: 'HOPERAT',
  recipient: { id: 'Organization/crm', role: 'IRCP' },
  policyVersion: 'gate-test@1',
  defaultDecision: 'deny',
  refreshMs: 0,
};
const FLOW = 'gate-test';

/** The state stores the gate reads on a cache miss: the embedded one, and PostgreSQL's local mirror. */
const schemas: string[] = [];
const opened: StateStore[] = [];
afterAll(async () => {
  for (const store of opened.splice(0)) await store.close();
  await dropSchemas(schemas.splice(0));
});
const ENGINES: { name: string; skip: string | undefined; open: () => Promise<StateStore> }[] = [
  { name: 'SQLite', skip: undefined, open: async () => SqliteStateStore.open(':memory:') },
  {
    name: 'PostgreSQL',
    skip: PG_SKIP,
    open: async () => {
      const schema = testSchema('sluice_gate');
      schemas.push(schema);
      const store = await PostgresStateStore.open({ url: TEST_PG_URL, schema });
      opened.push(store);
      return store;
    },
  },
];

const consentFor = (patientId: string, type: 'permit' | 'deny', lastUpdated: string, id = `c-${patientId}`) =>
  privacyConsent(patientId, type, { lastUpdated, id });

const gateOf = (cacheSize?: number): ConsentGate =>
  new ConsentGate(SETTINGS, 'epic', TEST_PSEUDONYM_KEY, cacheSize === undefined ? {} : { cacheSize });
const subjectOf = (patientId: string): string =>
  pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', patientId);

/** Ingests consents as a run does: one page, persisted, then `committed()`. */
async function ingestPage(gate: ConsentGate, store: StateStore, resources: unknown[]) {
  const consents: StoredConsent[] = [];
  const results = resources.map((r) => gate.ingest(r));
  for (const r of results) if (r.ok && r.value.stored) consents.push(r.value.stored);
  await store.commitPage({ flow: FLOW, stream: 'Consent', ledger: [], quarantine: [], consents });
  gate.committed();
  return results;
}

for (const engine of ENGINES)
  describe.skipIf(engine.skip !== undefined)(
    `consent gate memory bound over ${engine.name} (state store read on a miss)`,
    () => {
      const open = engine.open;
      let ids: string[] = [];
      beforeAll(async () => {
        ids = (await syntheaPatients()).map((p: JsonObject) => String(p.id));
        expect(ids.length).toBeGreaterThanOrEqual(40);
      });

      it('holds at most its cache size after each commit and decides exactly as an unbounded gate', async () => {
        const store = await open();
        const bounded = gateOf(3);
        await bounded.load(store, FLOW);
        const unbounded = gateOf();
        const people = ids.slice(0, 40);
        const consents = people.map((id, i) =>
          consentFor(id, i % 3 === 0 ? 'deny' : 'permit', `2026-11-0${1 + (i % 5)}T00:00:00Z`),
        );
        for (let page = 0; page < consents.length; page += 10) {
          const slice = consents.slice(page, page + 10);
          for (const c of slice) unbounded.ingest(c);
          await ingestPage(bounded, store, slice);
          expect(bounded.heldSubjects).toBeLessThanOrEqual(3);
        }
        const at = new Date('2026-11-20T00:00:00Z');
        // People not asked about are unknown to both: default deny.
        for (const id of [...people, ...ids.slice(40)]) {
          const a = bounded.check(subjectOf(id), 'Patient', at);
          const b = unbounded.check(subjectOf(id), 'Patient', at);
          expect({ id, decision: a.decision, rule: a.basis.rule }).toEqual({
            id,
            decision: b.decision,
            rule: b.basis.rule,
          });
        }
        expect(bounded.heldSubjects).toBeLessThanOrEqual(3);
        expect(
          people.filter((id) => bounded.check(subjectOf(id), 'Patient', at).decision === 'deny').length,
        ).toBe(14);
      });

      it('keeps people read but not yet committed, whatever the cache size', async () => {
        const store = await open();
        const gate = gateOf(2);
        await gate.load(store, FLOW).then(() => {
          for (const id of ids.slice(0, 8)) gate.ingest(consentFor(id, 'permit', '2026-11-01T00:00:00Z'));
          expect(gate.heldSubjects).toBe(8);
          const at = new Date('2026-11-20T00:00:00Z');
          for (const id of ids.slice(0, 8))
            expect(gate.check(subjectOf(id), 'Patient', at).decision).toBe('permit');
          gate.committed();
          expect(gate.heldSubjects).toBeLessThanOrEqual(2);
        });
      });

      it('a revocation read after its person left memory wins; an older version read later is not persisted', async () => {
        const store = await open();
        const gate = gateOf(1);
        await gate.load(store, FLOW);
        const [first, second] = ids as [string, string];
        await ingestPage(gate, store, [consentFor(first, 'permit', '2026-11-01T00:00:00Z')]);
        await ingestPage(gate, store, [consentFor(second, 'permit', '2026-11-01T00:00:00Z')]); // evicts `first`
        const at = new Date('2026-11-20T00:00:00Z');
        const [revoked] = await ingestPage(gate, store, [consentFor(first, 'deny', '2026-11-03T00:00:00Z')]);
        expect(revoked?.ok && revoked.value.stored !== undefined).toBe(true);
        await ingestPage(gate, store, [consentFor(second, 'permit', '2026-11-04T00:00:00Z')]); // evicts `first`
        // The stale permit, re-delivered out of order, neither changes the decision nor overwrites the store.
        const [stale] = await ingestPage(gate, store, [consentFor(first, 'permit', '2026-11-02T00:00:00Z')]);
        expect(stale?.ok && stale.value.stored === undefined).toBe(true);
        expect(gate.check(subjectOf(first), 'Patient', at).decision).toBe('deny');
        const fresh = gateOf(1);
        expect(await fresh.load(store, FLOW)).toBe(2);
        expect(fresh.check(subjectOf(first), 'Patient', at).decision).toBe('deny');
        expect(fresh.check(subjectOf(second), 'Patient', at).decision).toBe('permit');
      });

      it('a consent re-linked to another person leaves the first, even when the first is not in memory', async () => {
        const store = await open();
        const gate = gateOf(1);
        await gate.load(store, FLOW);
        const [a, b, c] = ids as [string, string, string];
        await ingestPage(gate, store, [consentFor(a, 'permit', '2026-11-01T00:00:00Z', 'shared')]);
        await ingestPage(gate, store, [consentFor(c, 'permit', '2026-11-01T00:00:00Z')]); // evicts `a`
        await ingestPage(gate, store, [consentFor(b, 'permit', '2026-11-02T00:00:00Z', 'shared')]);
        const at = new Date('2026-11-20T00:00:00Z');
        expect(gate.check(subjectOf(a), 'Patient', at).decision).toBe('deny');
        expect(gate.check(subjectOf(b), 'Patient', at).decision).toBe('permit');
        const fresh = gateOf(1);
        await fresh.load(store, FLOW);
        expect(fresh.check(subjectOf(a), 'Patient', at).decision).toBe('deny');
        expect(fresh.check(subjectOf(b), 'Patient', at).decision).toBe('permit');
      });
    },
  );

describe('consent gate send-time refresh', () => {
  /** A consent source that records what it was asked and answers with the given consents. */
  const consentSource = (consents: unknown[]) => {
    const reads: (string | undefined)[] = [];
    const source: Source = {
      system: asSystemName('epic'),
      streams: ['Consent'],
      async *read(_stream, since) {
        reads.push(since);
        yield { records: consents.map((resource) => ({ resource })) } as unknown as SourcePage;
      },
    };
    return { source, reads };
  };
  const signal = new AbortController().signal;
  const gateRefreshingEvery = (refreshMs: number) =>
    new ConsentGate({ ...SETTINGS, refreshMs }, 'epic', TEST_PSEUDONYM_KEY);

  it('a skipped re-read reports the instant the consents it knows were read as of, not the current time', async () => {
    const gate = gateRefreshingEvery(60_000);
    const { source, reads } = consentSource([]);
    // The consent stream was read by the run, its read starting at t=1000.
    gate.noteStreamPosition('2026-11-01T00:00:00.000Z', 1_000);
    const skipped = await gate.refresh(source, signal, 30_000);
    expect(reads).toEqual([]);
    expect(skipped.readAt).toBe(1_000);
    // Due again 60 s after that read started, not after it was noted.
    const due = await gate.refresh(source, signal, 61_000);
    expect(reads).toEqual(['2026-11-01T00:00:00.000Z']);
    expect(due.readAt).toBe(61_000);
    expect((await gate.refresh(source, signal, 90_000)).readAt).toBe(61_000);
  });

  it('an older read noted later does not move the known instant back', async () => {
    const gate = gateRefreshingEvery(60_000);
    const { source, reads } = consentSource([]);
    gate.noteStreamPosition('2026-11-02T00:00:00.000Z', 50_000);
    gate.noteStreamPosition('2026-11-01T00:00:00.000Z', 10_000);
    expect((await gate.refresh(source, signal, 100_000)).readAt).toBe(50_000);
    expect(reads).toEqual([]);
    await gate.refresh(source, signal, 110_000);
    expect(reads).toEqual(['2026-11-02T00:00:00.000Z']);
  });

  it('reports no instant before anything was read, and reads consents changed since the stream position', async () => {
    const [id] = ids;
    const gate = gateRefreshingEvery(60_000);
    const { source, reads } = consentSource([consentFor(id as string, 'permit', '2026-11-03T00:00:00Z')]);
    expect((await gate.refresh(source, signal, 1_000)).readAt).toBeUndefined();
    const read = await gate.refresh(source, signal, 70_000);
    expect(reads).toEqual([undefined]);
    expect(read.readAt).toBe(70_000);
    expect(read.subjects).toEqual(new Set([subjectOf(id as string)]));
    expect(gate.check(subjectOf(id as string), 'Patient', new Date('2026-11-20T00:00:00Z')).decision).toBe(
      'permit',
    );
  });

  it('applies a consent stamped beyond the clock skew, but reads on from the last believable stamp', async () => {
    const [a, b] = ids as [string, string];
    const now = Date.parse('2026-11-20T12:00:00Z');
    const gate = new ConsentGate(
      { ...SETTINGS, refreshMs: 0, clockSkewMs: 300_000 },
      'epic',
      TEST_PSEUDONYM_KEY,
    );
    const { source, reads } = consentSource([
      consentFor(a, 'permit', '2026-11-20T11:00:00Z'),
      // The source's clock is a day ahead for this one (written in another zone, too).
      consentFor(b, 'deny', '2026-11-21T14:00:00+02:00'),
    ]);
    await gate.refresh(source, signal, now);
    expect(gate.check(subjectOf(b), 'Patient', new Date(now)).decision).toBe('deny');
    await gate.refresh(source, signal, now + 1_000);
    // A revocation stamped correctly at 11:30 tomorrow morning's reader must still see: not past 11:00.
    expect(reads).toEqual([undefined, '2026-11-20T11:00:00.000Z']);
  });

  it('compares stream positions as times, whatever zone they are written in', async () => {
    const gate = gateRefreshingEvery(0);
    const { source, reads } = consentSource([]);
    gate.noteStreamPosition('2026-11-02T08:00:00+10:00', 1_000); // 2026-11-01T22:00Z
    gate.noteStreamPosition('2026-11-01T23:00:00Z', 2_000); // later, though its text sorts before
    await gate.refresh(source, signal, 3_000);
    expect(reads).toEqual(['2026-11-01T23:00:00Z']);
  });

  let ids: string[] = [];
  beforeAll(async () => {
    ids = (await syntheaPatients()).map((p: JsonObject) => String(p.id));
  });
});
