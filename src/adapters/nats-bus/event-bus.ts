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
   * Reads a resource type's events in order, from those stored at or after `since` (every one when
   * absent) up to the last one stored when the read began, `pageSize` at a time.
   */
  async *read(
    type: string,
    since: string | undefined,
    pageSize: number,
    signal: AbortSignal,
  ): AsyncGenerator<StoredEvent[]> {
    // The last event stored for this type when the read began: the read ends there (events stored
    // meanwhile are the next run's).
    const last = await this.jsm.streams
      .getMessage(this.stream, { last_by_subj: this.subjectOf(type) })
      .catch((err: unknown) => {
        if (/no message found|message not found/i.test((err as Error).message)) return undefined;
        throw err;
      });
    // Nothing stored since `since`: done, without a fetch that would wait for its expiry.
    if (!last || (since !== undefined && last.time.getTime() < Date.parse(since))) return;
    const consumer = await this.js.consumers.get(this.stream, {
      filter_subjects: this.subjectOf(type),
      ...(since === undefined
        ? { deliver_policy: DeliverPolicy.All }
        : {
            deliver_policy: DeliverPolicy.StartTime,
            opt_start_time: new Date(Date.parse(since)).toISOString(),
          }),
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
   * How many events of a type the bus holds stored after `since` (every one when absent): what a run
   * reading from that checkpoint has still to read. Counted by a consumer made for the question.
   */
  async waiting(type: string, since: string | undefined): Promise<number> {
    // No stream yet (nothing was ever ingested): nothing waits.
    if (!this.#exists) return 0;
    const after = since === undefined ? undefined : new Date(Date.parse(since) + 1).toISOString();
    const info = await this.jsm.consumers.add(this.stream, {
      filter_subject: this.subjectOf(type),
      ack_policy: AckPolicy.None,
      inactive_threshold: 5_000_000_000,
      ...(after === undefined
        ? { deliver_policy: DeliverPolicy.All }
        : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: after }),
    });
    await this.jsm.consumers.delete(this.stream, info.name).catch(() => false);
    return info.num_pending;
  }

  async close(): Promise<void> {
    await this.#nc.drain().catch(() => this.#nc.close());
  }
}
