import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { EventBus } from '../../adapters/nats-bus/event-bus.ts';
import { syntheaPatients } from '../../core/matrix/testing.ts';
import type { SystemName } from '../../core/model/ids.ts';
import type { SourcePage, SourceRecord } from '../../core/ports/source.ts';
import { deleteStreams, NATS_SKIP, TEST_NATS_URL, testStream } from '../../testkit/nats.ts';
import { payloadKey } from '../store/payload-cipher.ts';
import { BusSource, eventsLost, parseBusCursor, streamReplaced } from './bus-source.ts';
import { deletionEvent, openEvent, recordEvent } from './events.ts';
import { nextPosition } from './ingest.ts';

const key = payloadKey(randomBytes(32), 'k1');
const patients = (await syntheaPatients()).slice(0, 5);
const record = (resource: unknown, stream = 'Patient'): SourceRecord => ({
  stream,
  resource,
  origin: 'GET /Patient page 1',
});
const stored = (seq: number, e: { headers: Record<string, string>; data: string; id: string }) => ({
  seq,
  storedAt: '2026-12-07T00:00:00.000Z',
  headers: { ...e.headers, 'Nats-Msg-Id': e.id },
  data: e.data,
});

/** The bus source of a test stream. */
const busSource = (bus: EventBus, streams: string[], pageSize: number) =>
  new BusSource({ system: 'epic' as SystemName, streams, bus, key, pageSize, fetcher: {} });

/** The stream sequences of pages' cursors (`SEQ@CREATED`). */
const seqs = (pages: readonly SourcePage[]): (number | undefined)[] =>
  pages.map((p) => parseBusCursor(p.cursor)?.seq);

/** Every page of one read. */
async function readAll(
  source: BusSource,
  stream: string,
  since?: string,
  cursor?: string,
): Promise<SourcePage[]> {
  const pages: SourcePage[] = [];
  const resume = cursor === undefined ? undefined : { cursor };
  for await (const p of source.read(stream, since, new AbortController().signal, resume)) pages.push(p);
  return pages;
}

describe('change events', () => {
  it('seal a record and where it was read, and name it by a keyed hash of record and version', () => {
    const patient = patients[0];
    const event = recordEvent(key, 'f', record(patient));
    expect(event.data.startsWith('sluice-enc1:k1:')).toBe(true);
    expect(JSON.stringify(event)).not.toContain((patient as { id: string }).id);
    // The same version, the same id (the bus stores it once); another version, another id.
    expect(recordEvent(key, 'f', record(patient)).id).toBe(event.id);
    const edited = { ...(patient as object), meta: { versionId: '9', lastUpdated: '2026-12-01T00:00:00Z' } };
    expect(recordEvent(key, 'f', record(edited)).id).not.toBe(event.id);
    // Another key names it otherwise: ids say nothing to whoever lacks the key.
    expect(recordEvent(payloadKey(randomBytes(32), 'k2'), 'f', record(patient)).id).not.toBe(event.id);
    const opened = openEvent(key, 'f', 'Patient', 'S', stored(7, event));
    expect(opened).toEqual({
      kind: 'record',
      record: { stream: 'Patient', resource: patient, origin: 'GET /Patient page 1 via bus S #7' },
    });
  });

  it('do not open moved, altered, unsealed or foreign events: those become records to quarantine', () => {
    const event = recordEvent(key, 'f', record(patients[0]));
    const untrusted = (e: ReturnType<typeof stored>, flow = 'f', stream = 'Patient') => {
      const opened = openEvent(key, flow, stream, 'S', e);
      expect(opened.kind).toBe('record');
      if (opened.kind !== 'record') return '';
      expect(opened.record.resource).toBe(e.data);
      return opened.record.origin;
    };
    // Moved to another subject or flow: bound to them.
    expect(untrusted(stored(1, event), 'f', 'Practitioner')).toBe('bus S #1 (STATE_PAYLOAD_TAMPERED)');
    expect(untrusted(stored(1, event), 'g')).toContain('STATE_PAYLOAD_TAMPERED');
    // Altered.
    const flipped = `${event.data.slice(0, -3)}${event.data.endsWith('A') ? 'B' : 'A'}${event.data.slice(-2)}`;
    expect(untrusted({ ...stored(2, event), data: flipped })).toContain('STATE_PAYLOAD_TAMPERED');
    // Sealed under a key the flow does not have.
    const foreign = recordEvent(payloadKey(randomBytes(32), 'k9'), 'f', record(patients[0]));
    expect(untrusted(stored(3, foreign))).toContain('STATE_PAYLOAD_KEY_MISMATCH');
    // Plain JSON, with or without the headers.
    const plain = JSON.stringify(patients[0]);
    expect(untrusted({ ...stored(4, event), data: plain })).toContain('not sealed under the flow key');
    const bare = {
      seq: 5,
      storedAt: '2026-12-07T00:00:00.000Z',
      headers: { 'Nats-Msg-Id': 'x' },
      data: plain,
    };
    expect(untrusted(bare)).toContain('not a Sluice change event');
  });

  it('carry a deletion the source reported', () => {
    const deletion = {
      resourceType: 'Patient',
      id: 'p1',
      at: '2026-12-01T00:00:00Z',
      origin: 'bulk manifest',
    };
    const event = deletionEvent(key, 'f', 'Patient', deletion);
    expect(openEvent(key, 'f', 'Patient', 'S', stored(3, event))).toEqual({
      kind: 'deletion',
      deletion: { ...deletion, origin: 'bulk manifest via bus S #3' },
    });
  });
});

describe('the ingest checkpoint of a page', () => {
  const page = (stamps: (string | undefined)[], checkpoint?: string): SourcePage => ({
    records: stamps.map((s) =>
      record({ resourceType: 'Patient', id: 'x', ...(s ? { meta: { lastUpdated: s } } : {}) }),
    ),
    ...(checkpoint ? { checkpoint } : {}),
  });
  const latest = Date.parse('2026-12-07T00:05:00Z');

  it('is the newest stamp or source position, as UTC, never one beyond the clock-skew allowance', () => {
    expect(nextPosition(page(['2026-12-07T01:00:00+02:00', '2026-12-06T22:30:00Z']), false, latest)).toBe(
      '2026-12-06T23:00:00.000Z',
    );
    expect(nextPosition(page(['2026-12-06T10:00:00Z'], '2026-12-07T00:00:00Z'), false, latest)).toBe(
      '2026-12-07T00:00:00.000Z',
    );
    // A stamp from the future is clock skew: published, never a checkpoint.
    expect(nextPosition(page(['2027-01-01T00:00:00Z', '2026-12-06T10:00:00Z']), false, latest)).toBe(
      '2026-12-06T10:00:00.000Z',
    );
    expect(nextPosition(page([undefined, 'not a time']), false, latest)).toBeUndefined();
    // A bulk export: only its transaction time moves it.
    expect(nextPosition(page(['2026-12-06T10:00:00Z'], '2026-12-05T00:00:00Z'), true, latest)).toBe(
      '2026-12-05T00:00:00Z',
    );
  });
});

describe('eventsLost', () => {
  const extent = (firstSeq: number, lastSeq: number) => ({ firstSeq, lastSeq });
  it('holds when the stream discarded events past where the reader stands, unless a snapshot is held', () => {
    // Nothing ever discarded.
    expect(eventsLost({ cursor: undefined, since: undefined }, extent(1, 50), undefined)).toBe(false);
    // Discarded only what the reader had read up to.
    expect(eventsLost({ cursor: 40, since: undefined }, extent(41, 50), undefined)).toBe(false);
    expect(eventsLost({ cursor: 50, since: undefined }, extent(51, 50), undefined)).toBe(false);
    // One event past the reader discarded.
    expect(eventsLost({ cursor: 40, since: undefined }, extent(42, 50), undefined)).toBe(true);
    // Never read, the beginning gone.
    expect(eventsLost({ cursor: undefined, since: undefined }, extent(2, 50), undefined)).toBe(true);
    // A snapshot marker the stream still holds supersedes what was discarded before it.
    expect(eventsLost({ cursor: 40, since: undefined }, extent(42, 50), 45)).toBe(false);
    expect(eventsLost({ cursor: undefined, since: undefined }, extent(2, 50), 3)).toBe(false);
    // A time alone cannot tell (an idle stream looks the same): the read goes on and stores a cursor.
    expect(eventsLost({ cursor: undefined, since: '2026-12-01T00:00:00Z' }, extent(42, 50), undefined)).toBe(
      false,
    );
  });
});

describe('streamReplaced', () => {
  const extent = { firstSeq: 1, lastSeq: 20, created: '2026-12-07T10:00:00.1Z' };
  it('holds for a cursor read on another stream of the name, or past the last sequence ever stored', () => {
    expect(parseBusCursor('12@2026-12-07T10:00:00.1Z')).toEqual({
      seq: 12,
      stream: '2026-12-07T10:00:00.1Z',
    });
    expect(parseBusCursor('12')).toEqual({ seq: 12 });
    for (const bad of [undefined, '', 'x', '-1', '1.5', '99999999999999999999']) {
      expect(parseBusCursor(bad)).toBeUndefined();
    }
    expect(streamReplaced(undefined, extent)).toBe(false);
    expect(streamReplaced({ seq: 12, stream: extent.created }, extent)).toBe(false);
    expect(streamReplaced({ seq: 20 }, extent)).toBe(false);
    // Created again: sequences start over, so a smaller one says nothing; the creation instant does.
    expect(streamReplaced({ seq: 12, stream: '2026-12-01T08:00:00.5Z' }, extent)).toBe(true);
    // A cursor kept before streams were named: only past the last sequence can it tell.
    expect(streamReplaced({ seq: 21 }, extent)).toBe(true);
    expect(streamReplaced({ seq: 3 }, { firstSeq: 1, lastSeq: 0 })).toBe(true);
    expect(streamReplaced({ seq: 0 }, { firstSeq: 1, lastSeq: 0 })).toBe(false);
  });
});

describe.skipIf(NATS_SKIP !== undefined)('the bus source (NATS JetStream)', () => {
  const streams: string[] = [];
  afterAll(() => deleteStreams(streams));
  const open = async (stream: string) => {
    streams.push(stream);
    return EventBus.open({ url: TEST_NATS_URL, flow: 'bus-test', stream, maxAgeDays: 1, replicas: 1 });
  };

  it('reads each type in order from a checkpoint, stores a repeated event once, and carries deletions', async () => {
    const bus = await open(testStream());
    try {
      const first = patients.slice(0, 3).map((p) => recordEvent(key, 'bus-test', record(p)));
      expect(await bus.publish('Patient', first)).toEqual({ stored: 3, duplicates: 0 });
      expect(await bus.publish('Patient', first.slice(0, 1))).toEqual({ stored: 0, duplicates: 1 });
      await bus.publish('Practitioner', [
        recordEvent(key, 'bus-test', record({ resourceType: 'Practitioner', id: 'd1' }, 'Practitioner')),
      ]);
      const source = busSource(bus, ['Patient', 'Practitioner'], 2);
      const read = (stream: string, since?: string, cursor?: string) =>
        readAll(source, stream, since, cursor);
      const pages = await read('Patient');
      // The last page only moves the cursor past the Practitioner event stored after the Patients.
      expect(pages.map((p) => p.records.length)).toEqual([2, 1, 0]);
      expect(seqs(pages)).toEqual([2, 3, 4]);
      // Each cursor names the stream it was read on.
      const { created } = await bus.extent();
      expect(created).toBeDefined();
      expect(pages.every((p) => parseBusCursor(p.cursor)?.stream === created)).toBe(true);
      expect(pages.flatMap((p) => p.records.map((r) => (r.resource as { id: string }).id))).toEqual(
        patients.slice(0, 3).map((p) => (p as { id: string }).id),
      );
      expect(source.explicitCheckpoints).toBe(true);
      const checkpoint = pages.at(-1)?.checkpoint as string;
      expect(Date.parse(checkpoint)).not.toBeNaN();
      expect((await read('Practitioner')).flatMap((p) => p.records)).toHaveLength(1);

      // From the checkpoint: at most the events of that instant again, then what came after.
      await bus.publish('Patient', [
        recordEvent(key, 'bus-test', record(patients[3])),
        deletionEvent(key, 'bus-test', 'Patient', {
          resourceType: 'Patient',
          id: 'gone',
          origin: 'manifest',
        }),
      ]);
      const later = await read('Patient', checkpoint);
      const ids = later.flatMap((p) => p.records.map((r) => (r.resource as { id: string }).id));
      expect(ids.at(-1)).toBe((patients[3] as { id: string }).id);
      const earlier = patients.slice(0, 3).map((p) => (p as { id: string }).id);
      expect(ids.slice(0, -1).every((id) => earlier.includes(id))).toBe(true);
      expect(later.flatMap((p) => p.deletions ?? []).map((d) => d.id)).toEqual(['gone']);
      // Nothing after the last event: no record, and no wait. The stream's last sequence becomes the
      // cursor (a page with no records), then there is nothing left to say.
      const lastCheckpoint = later.at(-1)?.checkpoint as string;
      const future = new Date(Date.parse(lastCheckpoint) + 60_000).toISOString();
      const started = Date.now();
      const idle = await read('Patient', future);
      expect(idle.flatMap((p) => p.records)).toEqual([]);
      const cursor = later.at(-1)?.cursor as string;
      expect(idle.map((p) => p.cursor)).toEqual([cursor]);
      expect(await read('Patient', future, cursor)).toEqual([]);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await bus.close();
    }
  });

  it('refuses to read past events discarded before it read them, until a snapshot supersedes them', async () => {
    const bus = await open(testStream());
    try {
      const source = busSource(bus, ['Patient', 'Practitioner'], 10);
      const read = (stream: string, cursor?: string) => readAll(source, stream, undefined, cursor);
      const ids = (pages: SourcePage[]) =>
        pages.flatMap((p) => p.records.map((r) => (r.resource as { id: string }).id));
      const idOf = (i: number) => (patients[i] as { id: string }).id;
      const practitioner = (id: string) =>
        recordEvent(key, 'bus-test', record({ resourceType: 'Practitioner', id }, 'Practitioner'));
      // The age limit discards the oldest events; purging below a sequence does the same.
      const expire = (below: number) => bus.jsm.streams.purge(bus.stream, { seq: below });

      await bus.publish(
        'Patient',
        [0, 1].map((i) => recordEvent(key, 'bus-test', record(patients[i]))),
      );
      const first = await read('Patient');
      expect(ids(first)).toEqual([idOf(0), idOf(1)]);
      expect(seqs(first).at(-1)).toBe(2);

      // Another type's event, then everything up to it discarded: the Patient reader had read past it.
      await bus.publish('Practitioner', [practitioner('d1')]);
      const idle = await read('Patient', '2');
      expect(ids(idle)).toEqual([]);
      expect(seqs(idle)).toEqual([3]);
      await expire(4);
      await bus.publish('Patient', [recordEvent(key, 'bus-test', record(patients[2]))]);
      const next = await read('Patient', '3');
      expect(ids(next)).toEqual([idOf(2)]);
      expect(seqs(next).at(-1)).toBe(4);

      // The Practitioner reader never read: its first event is gone.
      const never = await read('Practitioner').catch((e: unknown) => e);
      expect((never as { code?: string }).code).toBe('BUS_EVENTS_EXPIRED');

      // Two Patient changes the reader had not read are discarded: it stops, reading nothing.
      await bus.publish(
        'Patient',
        [3, 4].map((i) => recordEvent(key, 'bus-test', record(patients[i]))),
      );
      await expire(7);
      const err = (await read('Patient', '4').catch((e: unknown) => e)) as {
        code?: string;
        message?: string;
        details?: Record<string, unknown>;
      };
      expect(err.code).toBe('BUS_EVENTS_EXPIRED');
      expect(err.details).toMatchObject({ type: 'Patient', firstHeld: 7, readUpTo: 4 });
      expect(err.message).not.toContain(idOf(3));

      // A snapshot (an ingest from no checkpoint) publishes every record again after a marker, each
      // stored though the bus stored the same version minutes ago: the reader reads on from it.
      await bus.markSnapshot('Patient', 'run-1', new Date().toISOString());
      const again = [0, 1, 2, 3, 4].map((i) => recordEvent(key, 'bus-test', record(patients[i]), 'run-1'));
      expect(await bus.publish('Patient', again)).toEqual({ stored: 5, duplicates: 0 });
      expect(ids(await read('Patient', '4'))).toEqual([0, 1, 2, 3, 4].map(idOf));
      // …and so does one that never read, now that the snapshot covers what was discarded.
      expect(ids(await read('Patient'))).toEqual([0, 1, 2, 3, 4].map(idOf));
    } finally {
      await bus.close();
    }
  });

  it('does not pass on a page when events past the previous one were discarded during the read', async () => {
    const bus = await open(testStream());
    try {
      const source = busSource(bus, ['Patient'], 1);
      await bus.publish(
        'Patient',
        patients.map((p) => recordEvent(key, 'bus-test', record(p))),
      );
      const pages = source.read('Patient', undefined, new AbortController().signal, { cursor: '0' });
      const first = await pages.next();
      expect(parseBusCursor(first.value?.cursor)?.seq).toBe(1);
      // The age limit reaches events the read has not come to yet.
      await bus.jsm.streams.purge(bus.stream, { seq: 4 });
      const err = await pages.next().catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('BUS_EVENTS_EXPIRED');
    } finally {
      await bus.close();
    }
  });

  it('never reads on by sequence in a stream created again: reads it whole after a snapshot, else stops', async () => {
    const name = testStream();
    let bus = await open(name);
    try {
      const idOf = (i: number) => (patients[i] as { id: string }).id;
      const ids = (pages: SourcePage[]) =>
        pages.flatMap((p) => p.records.map((r) => (r.resource as { id: string }).id));
      await bus.publish(
        'Patient',
        [0, 1, 2].map((i) => recordEvent(key, 'bus-test', record(patients[i]))),
      );
      const before = await readAll(busSource(bus, ['Patient'], 10), 'Patient');
      const cursor = before.at(-1)?.cursor as string;
      expect(parseBusCursor(cursor)?.seq).toBe(3);

      // The stream is deleted and created again; an ingest that read on from its checkpoints publishes
      // only later changes, numbered from 1 again: more of them than the run had read.
      await bus.jsm.streams.delete(name);
      await bus.close();
      bus = await open(name);
      await bus.publish(
        'Patient',
        [3, 4, 0, 1].map((i) => recordEvent(key, 'bus-test', record(patients[i]), 'later')),
      );
      const source = busSource(bus, ['Patient'], 10);
      const err = (await readAll(source, 'Patient', undefined, cursor).catch((e: unknown) => e)) as {
        code?: string;
        details?: Record<string, unknown>;
        message?: string;
      };
      expect(err.code).toBe('BUS_STREAM_REPLACED');
      expect(err.details).toMatchObject({ stream: name, type: 'Patient', lastSeq: 4 });
      expect(err.message).not.toContain(idOf(3));
      // A cursor kept before cursors named their stream, past the new stream's last sequence: the same.
      const legacy = await readAll(source, 'Patient', undefined, '9').catch((e: unknown) => e);
      expect((legacy as { code?: string }).code).toBe('BUS_STREAM_REPLACED');

      // `ingest --reset` marks a snapshot and publishes every record: the run reads the stream whole.
      await bus.markSnapshot('Patient', 'reset-run', new Date().toISOString());
      await bus.publish(
        'Patient',
        [0, 1, 2, 3, 4].map((i) => recordEvent(key, 'bus-test', record(patients[i]), 'reset-run')),
      );
      const after = await readAll(source, 'Patient', before.at(-1)?.checkpoint, cursor);
      expect(ids(after)).toEqual([3, 4, 0, 1, 0, 1, 2, 3, 4].map(idOf));
      const { created } = await bus.extent();
      expect(parseBusCursor(after.at(-1)?.cursor)).toEqual({ seq: 10, stream: created });
      // From there on, it reads on by sequence as before.
      expect(ids(await readAll(source, 'Patient', undefined, after.at(-1)?.cursor))).toEqual([]);
    } finally {
      await bus.close();
    }
  });

  it('refuses a stream of the same name that holds other subjects', async () => {
    // A stream made by something else under that name.
    const name = testStream();
    streams.push(name);
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      await (await jetstreamManager(nc)).streams.add({ name, subjects: [`elsewhere.${name}`] });
    } finally {
      await nc.close();
    }
    const err = await EventBus.open({
      url: TEST_NATS_URL,
      flow: 'other-flow',
      stream: name,
      maxAgeDays: 1,
      replicas: 1,
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('BUS_STREAM_MISMATCH');
  });

  it('reports an unreachable bus by its servers, without credentials', async () => {
    const err = await EventBus.open({
      url: 'nats://sluice:s3cret@127.0.0.1:1',
      flow: 'f',
      maxAgeDays: 1,
      replicas: 1,
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('BUS_UNAVAILABLE');
    expect(
      JSON.stringify({ m: (err as Error).message, d: (err as { details?: unknown }).details }),
    ).not.toContain('s3cret');
  });
});
