/**
 * The flow's event bus on NATS JetStream: one stream per flow, one subject per resource type
 * (`<STREAM>.<Type>`), so each type's change events keep their order. Publishing waits for the
 * server's acknowledgement (the event is stored) and names each event by record and version
 * (`Nats-Msg-Id`), so an event published twice within the duplicate window is stored once.
 */
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { SluiceError } from '../../core/errors/index.ts';

export interface EventBusOptions {
  /** Comma-separated `nats://` or `tls://` URLs (credentials in them are never printed). */
  readonly url: string;
  /** The flow's name: it names the subjects (and the stream, by default). */
  readonly flow: string;
  /** The JetStream stream (default `SLUICE_<FLOW>`). */
  readonly stream?: string;
  /** How long the stream keeps an event, in days. */
  readonly maxAgeDays: number;
  readonly replicas: number;
}

/** An event as the bus carries it: an id (record and version), text headers and a text body. */
export interface OutgoingEvent {
  readonly id: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly data: string;
}

/** An event as read back: its stream sequence and the time the server stored it. */
export interface StoredEvent {
  readonly seq: number;
  /** When the server stored it (ISO instant, milliseconds). */
  readonly storedAt: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly data: string;
}

/** Where a read of a type's events starts. */
export interface ReadFrom {
  /** After this stream sequence: the reader has read every event of the type up to it. */
  readonly afterSeq?: number;
  /** At or after this time (ISO instant), when no sequence is known. */
  readonly since?: string;
}

/** What a stream holds: sequences and times of its first and last events. */
export interface StreamExtent {
  /** The first sequence still held (the next one to be stored when none is; 0 on a new stream). */
  readonly firstSeq: number;
  /** The last sequence ever stored (0 when none was). */
  readonly lastSeq: number;
  readonly firstTs?: string;
  readonly lastTs?: string;
  /**
   * When the stream was created, as the server says it (absent when there is no stream): it names this
   * stream apart from one deleted and created again under the same name, whose sequences start over.
   */
  readonly created?: string;
}

/** How long an event published twice (a retried publish, a re-read page) is recognised as the same. */
const DUPLICATE_WINDOW_NS = 10 * 60 * 1_000_000_000;
const NS_PER_DAY = 86_400 * 1_000_000_000;

/** The stream a flow's events live in when the flow file names none. */
export function defaultStreamName(flow: string): string {
  return `SLUICE_${flow.toUpperCase().replaceAll('-', '_')}`;
}

/** The servers of a bus URL without credentials, for messages. */
export function busServers(url: string): string {
  return url
    .split(',')
    .map((u) => {
      try {
        const parsed = new URL(u.trim());
        return `${parsed.protocol}//${parsed.host}`;
      } catch {
        return '(unparseable URL)';
      }
    })
    .join(',');
}

export class EventBus {
  readonly stream: string;
  readonly flow: string;
  readonly #nc: NatsConnection;
  /** Whether the stream is there (a read-only bus does not create it). */
  readonly #exists: boolean;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;

  private constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    flow: string,
    stream: string,
    exists: boolean,
  ) {
    this.#exists = exists;
    this.#nc = nc;
    this.js = js;
    this.jsm = jsm;
    this.flow = flow;
    this.stream = stream;
  }

  /** The subject of a resource type's events: under the stream's name, which no other stream holds. */
  subjectOf(type: string): string {
    return `${this.stream}.${type}`;
  }

  /**
   * Connects and makes sure the flow's stream exists with the subjects, age and replicas asked for
   * (created when missing; an existing stream's age and replicas are updated to the flow file's).
   * `readOnly` (status) checks the stream without creating or changing it.
   */
  static async open(options: EventBusOptions & { readonly readOnly?: boolean }): Promise<EventBus> {
    const servers = options.url.split(',').map((u) => u.trim());
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers,
        name: `sluice ${options.flow}`,
        timeout: 10_000,
        maxReconnectAttempts: 10,
      });
    } catch (err) {
      throw new SluiceError('BUS_UNAVAILABLE', `Cannot reach the event bus at ${busServers(options.url)}.`, {
        cause: new Error((err as Error).message),
        details: { servers: busServers(options.url) },
      });
    }
    const stream = options.stream ?? defaultStreamName(options.flow);
    try {
      const jsm = await jetstreamManager(nc, { timeout: 10_000 });
      const subjects = [`${stream}.>`];
      const config = {
        max_age: options.maxAgeDays * NS_PER_DAY,
        num_replicas: options.replicas,
        duplicate_window: DUPLICATE_WINDOW_NS,
      };
      const existing = await jsm.streams.info(stream).catch((err: unknown) => {
        if (/stream not found/i.test((err as Error).message)) return undefined;
        throw err;
      });
      if (existing !== undefined && !existing.config.subjects?.includes(subjects[0] as string)) {
        throw new SluiceError(
          'BUS_STREAM_MISMATCH',
          `The JetStream stream ${stream} exists and does not hold the subjects Sluice gives it (${stream}.>).`,
          { details: { stream } },
        );
      }
      // Only asked about (`sluice status`): the stream is neither created nor changed.
      if (!options.readOnly) {
        if (existing === undefined) {
          await jsm.streams.add({ name: stream, subjects, storage: StorageType.File, ...config });
        } else {
          await jsm.streams.update(stream, { ...existing.config, ...config });
        }
      }
      return new EventBus(
        nc,
        jetstream(nc, { timeout: 10_000 }),
        jsm,
        options.flow,
        stream,
        existing !== undefined || !options.readOnly,
      );
    } catch (err) {
      await nc.close().catch(() => undefined);
      if (err instanceof SluiceError) throw err;
      throw new SluiceError(
        'BUS_UNAVAILABLE',
        `The event bus at ${busServers(options.url)} refused the stream ${stream}: ${(err as Error).message}`,
        { details: { servers: busServers(options.url), stream } },
      );
    }
  }

  /**
   * Publishes events of one resource type and waits until the server has stored every one. Returns
   * how many were new (the others were duplicates of events it already held).
   */
  async publish(
    type: string,
    events: readonly OutgoingEvent[],
    signal?: AbortSignal,
  ): Promise<{ stored: number; duplicates: number }> {
    const subject = this.subjectOf(type);
    const acks = await Promise.all(
      events.map((event) => {
        signal?.throwIfAborted();
        const h = natsHeaders();
        for (const [name, value] of Object.entries(event.headers)) h.set(name, value);
        return this.js.publish(subject, event.data, { msgID: event.id, headers: h, timeout: 30_000 });
      }),
    );
    const duplicates = acks.filter((a) => a.duplicate).length;
    return { stored: acks.length - duplicates, duplicates };
  }

  /**
   * What the stream holds now: its first and last sequence and their times (`firstSeq` is past
   * `lastSeq` when every event was discarded). Events before `firstSeq` are gone: the age limit (or a
   * purge) discarded them.
   */
  async extent(): Promise<StreamExtent> {
    if (!this.#exists) return { firstSeq: 1, lastSeq: 0 };
    const { state, created } = await this.jsm.streams.info(this.stream);
    return {
      firstSeq: state.first_seq,
      lastSeq: state.last_seq,
      ...(state.messages > 0 ? { firstTs: isoOf(state.first_ts), lastTs: isoOf(state.last_ts) } : {}),
      created,
    };
  }

  /**
   * Marks the start of a complete read of a type's records onto the bus (an ingest from no checkpoint):
   * every record of the type follows this marker, so events discarded before it are superseded.
   */
  async markSnapshot(type: string, runId: string, at: string): Promise<void> {
    const body = JSON.stringify({ flow: this.flow, type, runId, at });
    await this.js.publish(this.#snapshotSubject(type), body, {
      msgID: `snapshot:${type}:${runId}`,
      timeout: 30_000,
    });
  }

  /** The stream sequence of the newest snapshot marker of a type the stream still holds. */
  async snapshotSeq(type: string): Promise<number | undefined> {
    if (!this.#exists) return undefined;
    const marker = await this.#lastOf(this.#snapshotSubject(type));
    return marker?.seq;
  }

  #snapshotSubject(type: string): string {
    return `${this.stream}._snapshot.${type}`;
  }

  /** The newest event stored on a subject, or undefined. */
  async #lastOf(subject: string): Promise<{ seq: number; time: Date } | undefined> {
    return this.jsm.streams.getMessage(this.stream, { last_by_subj: subject }).then(
      (m) => (m === null ? undefined : { seq: m.seq, time: m.time }),
      (err: unknown) => {
        if (/no message found|message not found/i.test((err as Error).message)) return undefined;
        throw err;
      },
    );
  }

  /**
   * Reads a resource type's events in order, up to the last one stored when the read began,
   * `pageSize` at a time: those after stream sequence `from.afterSeq`, else those stored at or after
   * `from.since`, else every one.
   */
  async *read(
    type: string,
    from: ReadFrom,
    pageSize: number,
    signal: AbortSignal,
  ): AsyncGenerator<StoredEvent[]> {
    const { afterSeq, since } = from;
    // The last event stored for this type when the read began: the read ends there (events stored
    // meanwhile are the next run's).
    const last = await this.#lastOf(this.subjectOf(type));
    // Nothing stored after where the read starts: done, without a fetch that would wait for its expiry.
    if (
      !last ||
      (afterSeq !== undefined && last.seq <= afterSeq) ||
      (afterSeq === undefined && since !== undefined && last.time.getTime() < Date.parse(since))
    )
      return;
    const consumer = await this.js.consumers.get(this.stream, {
      filter_subjects: this.subjectOf(type),
      ...startOf(from),
    });
    let seq = 0;
    // Fetches in a row that brought nothing although events are left (an ordered consumer being reset).
    let empty = 0;
    while (seq < last.seq) {
      signal.throwIfAborted();
      const page: StoredEvent[] = [];
      const messages = await consumer.fetch({ max_messages: pageSize, expires: 5000 });
      for await (const m of messages) {
        const h: Record<string, string> = {};
        for (const [name] of m.headers ?? []) h[name] = m.headers?.get(name) ?? '';
        page.push({
          seq: m.seq,
          storedAt: new Date(m.timestamp).toISOString(),
          headers: h,
          data: m.string(),
        });
        seq = m.seq;
        if (seq >= last.seq) break;
      }
      if (page.length === 0) {
        // Events up to the last one are still to come: a stalled read fails (the checkpoint stays where
        // the pages read so far left it) rather than pass for a complete one.
        if (++empty < 3) continue;
        throw new SluiceError(
          'BUS_UNAVAILABLE',
          `Reading ${this.subjectOf(type)} stalled at event #${seq} of ${last.seq}; the next run reads on from its checkpoint.`,
          { details: { stream: this.stream, seq, last: last.seq } },
        );
      }
      empty = 0;
      yield page;
    }
  }

  /**
   * How many events of a type the bus holds after where a run reading from `from` starts (every one
   * when it says nothing): what it has still to read. Counted by a consumer made for the question.
   */
  async waiting(type: string, from: ReadFrom): Promise<number> {
    // No stream yet (nothing was ever ingested): nothing waits.
    if (!this.#exists) return 0;
    const after =
      from.afterSeq === undefined && from.since !== undefined
        ? { since: new Date(Date.parse(from.since) + 1).toISOString() }
        : from;
    const info = await this.jsm.consumers.add(this.stream, {
      filter_subject: this.subjectOf(type),
      ack_policy: AckPolicy.None,
      inactive_threshold: 5_000_000_000,
      ...startOf(after),
    });
    await this.jsm.consumers.delete(this.stream, info.name).catch(() => false);
    return info.num_pending;
  }

  async close(): Promise<void> {
    await this.#nc.drain().catch(() => this.#nc.close());
  }
}

/** A consumer's start: after a sequence, from a time, or from the first event held. */
function startOf(from: ReadFrom) {
  if (from.afterSeq !== undefined)
    return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.afterSeq + 1 };
  if (from.since !== undefined)
    return {
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: new Date(Date.parse(from.since)).toISOString(),
    };
  return { deliver_policy: DeliverPolicy.All };
}

/** A server time as an ISO instant (milliseconds). */
function isoOf(time: string): string {
  return new Date(Date.parse(time)).toISOString();
}
