import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { EventBus, OutgoingEvent } from '../../src/adapters/nats-bus/event-bus.ts';
import { SluiceError } from '../../src/core/errors/index.ts';
import { ingestFlow, ingestStateKey } from '../../src/engine/bus/ingest.ts';
import { payloadKey } from '../../src/engine/store/payload-cipher.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import { MemorySource, silentLogger, stamp } from './fakes.ts';

// `ingestFlow` against an in-memory source and bus: a page's checkpoint moves only once the bus has
// stored all of its events, so a failure loses nothing, and progress and the audit trail see each run.

/** A bus that stores events by id (a repeat is a duplicate), and can be made to fail a publish. */
function memoryBus() {
  const stored = new Map<string, OutgoingEvent>();
  let failOnPublish: number | undefined;
  let publishes = 0;
  const snapshots: string[] = [];
  let created = '2026-12-01T00:00:00.000000001Z';
  const bus = {
    stream: 'SLUICE_TEST',
    async extent() {
      return { firstSeq: 1, lastSeq: stored.size + snapshots.length, created };
    },
    async markSnapshot(type: string) {
      snapshots.push(type);
    },
    async publish(_type: string, events: readonly OutgoingEvent[]) {
      publishes++;
      if (failOnPublish !== undefined && publishes >= failOnPublish) {
        throw new SluiceError('BUS_UNAVAILABLE', 'The test bus went away.');
      }
      let duplicates = 0;
      for (const e of events) {
        if (stored.has(e.id)) duplicates++;
        else stored.set(e.id, e);
      }
      return { stored: events.length - duplicates, duplicates };
    },
  };
  return {
    bus: bus as unknown as EventBus,
    stored,
    snapshots,
    failFrom(n: number) {
      failOnPublish = publishes + n;
    },
    /** The stream deleted and created again: empty, under a new creation instant. */
    recreate(at: string) {
      stored.clear();
      snapshots.length = 0;
      created = at;
    },
  };
}

/** Organizations stamped a second apart, as a server would. */
const organizations = (n: number) =>
  stamp(
    Array.from({ length: n }, (_, i) => ({ resourceType: 'Organization', id: `o${i}`, name: `Org ${i}` })),
  );
const stampOf = (resources: readonly unknown[], i: number): string =>
  new Date(
    Date.parse(String((resources[i] as { meta: { lastUpdated: string } }).meta.lastUpdated)),
  ).toISOString();

/** An audit trail that keeps what is appended. */
function auditRecorder() {
  const entries: { kind?: string; outcome?: string; reason?: string }[] = [];
  return {
    entries,
    audit: {
      append: async (more: readonly object[]) => {
        entries.push(...more);
        return [];
      },
    },
  };
}

describe('ingestFlow', () => {
  const key = payloadKey(randomBytes(32), 'k1');
  const base = (store: SqliteStateStore, source: MemorySource, bus: EventBus) => ({
    flow: 'f',
    definitionHash: 'd1',
    sourceUrl: 'http://ehr.test/fhir',
    source,
    bus,
    key,
    store,
    logger: silentLogger,
  });

  it('publishes every record, checkpoints per page, and on the next run reads on from there', async () => {
    const store = SqliteStateStore.open(':memory:');
    const source7 = organizations(7);
    const source = new MemorySource({ Organization: source7 }, 3);
    const { bus, stored, snapshots } = memoryBus();
    const progress: string[] = [];
    const recorder = auditRecorder();
    const appended = recorder.entries;
    const first = await ingestFlow({
      ...base(store, source, bus),
      progress: {
        streamStarted: (s) => progress.push(`start ${s}`),
        pageCommitted: (s, n, total) => progress.push(`${s} ${n}/${total}`),
        streamFinished: (s, n) => progress.push(`done ${s} ${n}`),
      },
      audit: recorder.audit,
    });
    expect(first).toMatchObject({ status: 'succeeded', read: 7, published: 7, duplicates: 0 });
    expect(stored.size).toBe(7);
    // A read from no checkpoint is a snapshot: marked on the bus before its first event.
    expect(snapshots).toEqual(['Organization']);
    expect(progress).toEqual([
      'start Organization',
      'Organization 3/7',
      'Organization 6/7',
      'Organization 7/7',
      'done Organization 7',
    ]);
    const checkpoint = await store.getCheckpoint(ingestStateKey('f'), 'Organization');
    expect(checkpoint?.position).toBe(stampOf(source7, 6));
    expect(appended).toEqual([
      expect.objectContaining({ kind: 'receive', reason: 'bus-ingest', outcome: 'success' }),
    ]);
    // The pipeline's own checkpoints are elsewhere: the run's state is untouched.
    expect(await store.listCheckpoints('f')).toEqual([]);

    const again = await ingestFlow({
      ...base(store, source, bus),
      audit: recorder.audit,
    });
    expect(source.reads.at(-1)?.since).toBe(checkpoint?.position);
    // The record at the checkpoint is read again and stored once; an idle run is not audited.
    expect(again).toMatchObject({ status: 'succeeded', published: 0, idle: true });
    expect(appended).toHaveLength(1);
    expect(snapshots).toHaveLength(1);
    await store.close();
  });

  it('leaves the checkpoint at the last page the bus stored when a publish fails: nothing is lost', async () => {
    const store = SqliteStateStore.open(':memory:');
    const source9 = organizations(9);
    const source = new MemorySource({ Organization: source9 }, 3);
    const { bus, stored, failFrom } = memoryBus();
    failFrom(2);
    const recorder = auditRecorder();
    const appended = recorder.entries;
    const failed = await ingestFlow({
      ...base(store, source, bus),
      audit: recorder.audit,
    });
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'BUS_UNAVAILABLE' }, published: 3 });
    expect(appended).toEqual([
      expect.objectContaining({ outcome: 'serious-failure', reason: 'BUS_UNAVAILABLE' }),
    ]);
    const after = await store.getCheckpoint(ingestStateKey('f'), 'Organization');
    expect(after?.position).toBe(stampOf(source9, 2));

    // The bus is back: the next run reads from that page on, and every record ends up on the bus once.
    failFrom(1_000);
    const resumed = await ingestFlow(base(store, source, bus));
    expect(resumed.status).toBe('succeeded');
    expect(stored.size).toBe(9);
    await store.close();
  });

  it('refuses checkpoints taken against another EHR', async () => {
    const store = SqliteStateStore.open(':memory:');
    const source = new MemorySource({ Organization: organizations(2) }, 3);
    const { bus, stored, snapshots } = memoryBus();
    await ingestFlow(base(store, source, bus));
    const moved = await ingestFlow({ ...base(store, source, bus), sourceUrl: 'http://other-ehr.test/fhir' });
    expect(moved).toMatchObject({ status: 'failed', error: { code: 'STATE_ENVIRONMENT_CHANGED' } });
    const reset = await ingestFlow({
      ...base(store, source, bus),
      sourceUrl: 'http://other-ehr.test/fhir',
      reset: true,
    });
    // A reset reads everything again as a new snapshot whose events the bus stores anew (its
    // duplicate window must not drop a record whose earlier event was discarded meanwhile).
    expect(reset).toMatchObject({ status: 'succeeded', published: 2, duplicates: 0 });
    expect(stored.size).toBe(4);
    expect(snapshots).toEqual(['Organization', 'Organization']);
    await store.close();
  });

  it('refuses to publish only changes into a stream other than the one it published into', async () => {
    const store = SqliteStateStore.open(':memory:');
    const source = new MemorySource({ Organization: organizations(4) }, 3);
    const { bus, stored, snapshots, recreate } = memoryBus();
    await ingestFlow(base(store, source, bus));
    const checkpoint = await store.getCheckpoint(ingestStateKey('f'), 'Organization');
    expect(checkpoint?.cursor).toBe('2026-12-01T00:00:00.000000001Z');

    // The stream is deleted and created again (or the flow file names another): what it held is gone,
    // and publishing only what changed since the checkpoint would leave the run without the rest.
    recreate('2026-12-05T10:00:00.000000002Z');
    const refused = await ingestFlow(base(store, source, bus));
    expect(refused).toMatchObject({ status: 'failed', error: { code: 'BUS_STREAM_REPLACED' }, published: 0 });
    expect(stored.size).toBe(0);
    expect((await store.getCheckpoint(ingestStateKey('f'), 'Organization'))?.cursor).toBe(checkpoint?.cursor);

    // --reset publishes everything into the new stream after a snapshot mark, and names it.
    const reset = await ingestFlow({ ...base(store, source, bus), reset: true });
    expect(reset).toMatchObject({ status: 'succeeded', published: 4 });
    expect(snapshots).toEqual(['Organization']);
    expect((await store.getCheckpoint(ingestStateKey('f'), 'Organization'))?.cursor).toBe(
      '2026-12-05T10:00:00.000000002Z',
    );
    expect(await ingestFlow(base(store, source, bus))).toMatchObject({ status: 'succeeded' });
    await store.close();
  });
});
